"""Which configs sfrik-compare runs: the protocols of the packaged configs (sfrik_plugin_configs)
that have a linear probe, each protocol's methods, and the command line's --protocol and --methods
resolved to the linear config and each method's pretraining config."""

import importlib.resources
from collections.abc import Sequence

PROTOCOL_ALIASES = {"cpu_smoke": "cpu"}  # protocol file name -> suffix of its configs


def packaged_configs() -> list[str]:
    """Names of the top-level configs in sfrik_plugin_configs (what --config-name accepts)."""
    root = importlib.resources.files("sfrik_plugin_configs")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def protocols(configs: Sequence[str]) -> list[str]:
    """The protocols with a linear probe: linear_<protocol> (linear_in20_tuning is a variant)."""
    return sorted(
        name[len("linear_") :] for name in configs if name.startswith("linear_") and "_" not in name[len("linear_") :]
    )


def methods_for(protocol: str, configs: Sequence[str]) -> dict[str, str]:
    """Method label -> pretraining config of ``protocol``: the config name without its protocol
    part, so sfrik_cpu -> sfrik, barlow_twins_in20 -> barlow_twins, sfrik_in100_q8192 -> sfrik_q8192."""
    found = {}
    for name in configs:
        parts = name.split("_")
        if parts[0] in ("linear", "semisup") or protocol not in parts[1:]:  # evaluations, not methods
            continue
        i = parts.index(protocol, 1)
        found["_".join(parts[:i] + parts[i + 1 :])] = name
    return found


def resolve(
    protocol: str, methods: Sequence[str], configs: Sequence[str] | None = None
) -> tuple[str, list[tuple[str, str]]]:
    """(linear config, [(method label, pretraining config)]) for the command-line arguments.
    A method is a label (sfrik) or a full config name of the protocol (sfrik_cpu)."""
    configs = packaged_configs() if configs is None else configs
    known = protocols(configs)
    protocol = PROTOCOL_ALIASES.get(protocol, protocol)
    if protocol not in known:
        aliases = ", ".join(f"{a} = {p}" for a, p in PROTOCOL_ALIASES.items())
        raise ValueError(
            f"--protocol {protocol!r}: no such protocol; the packaged configs have {', '.join(known)} ({aliases})"
        )
    available = methods_for(protocol, configs)
    if not methods:
        raise ValueError(f"--methods: give at least one of {', '.join(sorted(available))}")
    by_config = {config: label for label, config in available.items()}
    runs = []
    for method in methods:
        if method in available:
            runs.append((method, available[method]))
        elif method in by_config:
            runs.append((by_config[method], method))
        else:
            hint = " (a Hydra override? put overrides after `--`)" if "=" in method else ""
            raise ValueError(
                f"--methods: no config for {method!r} in protocol {protocol!r}{hint} "
                f"(looked for {method}_{protocol}.yaml in sfrik_plugin_configs); "
                f"methods of {protocol}: {', '.join(sorted(available))}"
            )
    labels = [label for label, _ in runs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"--methods: {', '.join(repeated)} given more than once")
    return f"linear_{protocol}", runs

"""sfrik-compare's configs: the packaged protocols and their methods, --protocol and --methods
resolved (and their errors), and the Hydra override values it writes (checkpoint paths) and reads
(data.val_path) as Hydra's own parser does."""

import pytest

from sfrik_experiments.compare import configs, runs, val_images

CPU_METHODS = {
    "sfrik": "sfrik_cpu",
    "vicreg": "vicreg_cpu",
    "simclr": "simclr_cpu",
    "barlow_twins": "barlow_twins_cpu",
    "auh": "auh_cpu",
}


def test_protocols_and_methods_of_the_packaged_configs():
    packaged = configs.packaged_configs()
    assert configs.protocols(packaged) == ["cpu", "in100", "in20"]
    assert configs.methods_for("cpu", packaged) == CPU_METHODS
    assert configs.methods_for("in20", packaged) == {
        **{m: c.replace("_cpu", "_in20") for m, c in CPU_METHODS.items()},
        "sfrik_multicrop": "sfrik_in20_multicrop",
    }
    assert configs.methods_for("in100", packaged) == {
        "sfrik": "sfrik_in100",
        "sfrik_q8192": "sfrik_in100_q8192",
        "vicreg": "vicreg_in100",
    }


def test_resolve_labels_config_names_and_alias():
    assert configs.resolve("cpu_smoke", ["sfrik", "vicreg_cpu", "barlow_twins"]) == (
        "linear_cpu",
        [("sfrik", "sfrik_cpu"), ("vicreg", "vicreg_cpu"), ("barlow_twins", "barlow_twins_cpu")],
    )
    assert configs.resolve("in100", ["sfrik_q8192"]) == ("linear_in100", [("sfrik_q8192", "sfrik_in100_q8192")])


@pytest.mark.parametrize(
    "protocol, methods, match",
    [
        (
            "in10",
            ["sfrik"],
            r"--protocol 'in10': no such protocol; the packaged configs have cpu, in100, in20 "
            r"\(cpu_smoke = cpu\)",
        ),
        (
            "cpu",
            ["byol"],
            r"--methods: no config for 'byol' in protocol 'cpu' \(looked for byol_cpu.yaml in "
            r"sfrik_plugin_configs\); methods of cpu: auh, barlow_twins, sfrik, simclr, vicreg",
        ),
        (
            "in100",
            ["simclr"],
            r"no config for 'simclr' in protocol 'in100'.*methods of in100: sfrik, sfrik_q8192, vicreg",
        ),
        ("cpu", ["sfrik_in20"], r"no config for 'sfrik_in20' in protocol 'cpu'"),
        ("cpu", ["data.train_path=/x"], r"a Hydra override\? put overrides after `--`"),
        ("cpu", ["sfrik", "vicreg", "sfrik_cpu"], r"--methods: sfrik given more than once"),
        ("cpu", [], r"--methods: give at least one of auh, barlow_twins, sfrik, simclr, vicreg"),
    ],
)
def test_resolve_errors_name_the_argument(protocol, methods, match):
    with pytest.raises(ValueError, match=match):
        configs.resolve(protocol, methods)


def test_hydra_path_round_trips_through_hydras_parser():
    parser_module = pytest.importorskip("hydra.core.override_parser.overrides_parser")
    parser = parser_module.OverridesParser.create()
    for path in ["/plain/run-1.ckpt", "/ckpt/sfrik/0/sfrik-cpu-0-ep=0.ckpt", "/with space/it's", 'a"b\\', "C:\\x\\"]:
        value = runs.hydra_path(path)
        assert parser.parse_override(f"pretrained_feature_extractor={value}").value() == path, value
    assert runs.hydra_path("/plain/run-1.ckpt") == "/plain/run-1.ckpt"  # printed commands stay readable


def test_override_value_reads_what_hydra_reads():
    parser_module = pytest.importorskip("hydra.core.override_parser.overrides_parser")
    parser = parser_module.OverridesParser.create()
    for path in ["/plain/val", "/ckpt/x-ep=0.ckpt", "/with space/it's", 'a"b\\', "C:\\x\\", "'single'"]:
        for prefix in ("", "+", "++"):
            override = f"{prefix}data.val_path={runs.hydra_path(path)}"
            assert parser.parse_override(override).value() == path
            assert val_images.override_value([override], "data.val_path") == path, override
    assert val_images.override_value(["data.val_path='/a b'"], "data.val_path") == "/a b"
    # the last one wins, as in Hydra; other keys and deletions
    overrides = ["data.val_path=/a", "data.train_path=/t", "++data.val_path=/b"]
    assert val_images.override_value(overrides, "data.val_path") == "/b"
    assert val_images.override_value([*overrides, "~data.val_path"], "data.val_path") is None
    assert val_images.override_value(["data.val_path_x=/a", "xdata.val_path=/b"], "data.val_path") is None

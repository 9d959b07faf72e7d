"""The figures the README and docs/comparison.md quote from the comparison study's record, recomputed
from its rows with the study's statistics (scipy underneath): each method's final runs at the
setting the study chose (helpers.records.study_final), paired differences to SFRIK over the same
seeds, Holm's correction over the baselines."""

from __future__ import annotations

from helpers.records import METHOD_LABELS, STUDY, STUDY_PRESETS, STUDY_V2, recorded, study_choices, study_final
from sfrik_experiments.study import stats

BASELINES = ("auh", "vicreg", "barlow_twins", "simclr", "sigreg", "mmcr")
LABELS = {key: label for label, key in METHOD_LABELS.items()}


def summary(method: str, q: int = 1024, metric: str = "linear_top1", record: str = STUDY) -> stats.Summary:
    return stats.summarise(list(study_final(metric, method, q, record).values()))


def comparisons(metric: str, q: int = 1024, record: str = STUDY) -> dict[str, tuple]:
    """baseline -> (paired difference baseline − SFRIK, p, Holm p over the baselines)."""
    sfrik = study_final(metric, "sfrik", q, record)
    tests = {}
    for m in BASELINES:
        other = study_final(metric, m, q, record)
        seeds = sorted(set(other) & set(sfrik))
        d = stats.paired_difference([other[s] for s in seeds], [sfrik[s] for s in seeds])
        tests[m] = (d, stats.paired_t_p_value(d))
    adjusted = stats.holm([p for _, p in tests.values()])
    return {m: (d, p, h) for (m, (d, p)), h in zip(tests.items(), adjusted)}


def verdict(d, p_holm: float) -> str:
    return "tie" if p_holm >= 0.05 else ("SFRIK ahead" if d.mean < 0 else "SFRIK behind")


def verdicts(metric: str, q: int = 1024, record: str = STUDY) -> dict[str, str]:
    return {m: verdict(d, h) for m, (d, _, h) in comparisons(metric, q, record).items()}


def names(methods) -> str:
    """Labels in prose, in the order given: "AUH, VICReg and MMCR"; "none" for none."""
    labels = [LABELS[m] for m in methods]
    if not labels:
        return "none"
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def by_mean(methods, q: int = 1024, metric: str = "linear_top1") -> list[str]:
    """The methods ordered by mean, highest first."""
    return sorted(methods, key=lambda m: -summary(m, q, metric).mean)


def reading_sentences() -> dict[str, str]:
    """The README's plain reading of the record at q = 1024, each sentence built from the figures
    it states (so that a changed record fails the test that looks for them)."""
    linear, knn = verdicts("linear_top1"), verdicts("knn_top1")
    order = by_mean(("sfrik", *BASELINES))
    top, second = order[0], order[1]
    sentences = {}
    if top == "sfrik":
        gap = summary("sfrik").mean - summary(second).mean
        sentences["top"] = (
            f"SFRIK has the highest mean linear top-1 ({summary('sfrik').mean:.2f} %), {gap:.2f} points above "
            f"{LABELS[second]}"
        )
    else:
        sentences["top"] = f"SFRIK is not ahead: {LABELS[top]} has the highest mean linear top-1"
    ahead = [m for m in order if linear.get(m) == "SFRIK ahead"]
    ahead_knn = [m for m in order if knn.get(m) == "SFRIK ahead"]
    sentences["ahead"] = (
        f"After Holm's correction over the six baselines SFRIK is ahead of {names(ahead)} on the linear probe "
        f"and of {names(ahead_knn)} on the kNN probe"
    )
    behind = [m for m in order if "SFRIK behind" in (linear.get(m), knn.get(m))]
    sentences["behind"] = f"{names(behind)} is ahead of it" if behind else "no baseline is ahead of it on either probe"
    ties = [m for m in order if linear.get(m) == "tie"]
    if ties:
        sentences["ties"] = f"{names(ties)} {'is a tie' if len(ties) == 1 else 'are ties'} on the linear probe"
    tests = comparisons("linear_top1")
    leads = sorted((-tests[m][0].mean, m) for m in ahead)
    if leads:
        (low, low_m), (high, high_m) = leads[0], leads[-1]
        sentences["leads"] = (
            f"Its leads on the linear probe run from {low:.2f} points ({LABELS[low_m]}, Holm p "
            f"{tests[low_m][2]:.3f}) to {high:.2f} ({LABELS[high_m]})"
        )
    v2 = verdicts("linear_top1", record=STUDY_V2)
    v2_ahead = [m for m in by_mean(BASELINES) if v2[m] == "SFRIK ahead"]
    v2_ties = [m for m in by_mean(BASELINES) if v2[m] == "tie"]
    sentences["v2"] = f"With five seeds (v2) SFRIK was ahead of {names(v2_ahead)} only, and {names(v2_ties)} were ties"
    return sentences


def q_sentences() -> dict[str, str]:
    """The README's reading of the q table: the highest mean at q = 256 and 4096 and SFRIK's
    significant differences there."""
    sentences = {}
    for q in (256, 4096):
        order = by_mean(("sfrik", *BASELINES), q)
        sf = summary("sfrik", q).mean
        if order[0] == "sfrik":
            sentences[f"top{q}"] = f"At q = {q} SFRIK has the highest mean ({sf:.2f})"
        else:
            best = summary(order[0], q).mean
            best_label = LABELS[order[0]]
            sentences[f"top{q}"] = f"At q = {q} {best_label} has the highest mean ({best:.2f} against SFRIK's {sf:.2f})"
        linear, knn = verdicts("linear_top1", q), verdicts("knn_top1", q)
        ahead = [m for m in order if linear.get(m) == "SFRIK ahead"]
        ahead_knn = [m for m in order if knn.get(m) == "SFRIK ahead"]
        behind = [m for m in order if "SFRIK behind" in (linear.get(m), knn.get(m))]
        text = f"after the correction SFRIK is ahead of {names(ahead)} on the linear probe"
        text += f" and of {names(ahead_knn)} on kNN"
        sentences[f"ahead{q}"] = text + (f", behind {names(behind)}" if behind else ", behind none")
    return sentences


def tune_mean(method: str, setting: dict, seeds=(10, 11, 12), record: str = STUDY) -> float:
    """A q = 1024 tuning cell's mean validation linear top-1 over the tuning and confirmation seeds."""
    from sfrik_experiments.engine.runs import format_setting

    values = {
        int(r["seed"]): float(r["linear_top1"])
        for r in recorded(record)
        if (r["phase"], r["method"], r["q"], r["setting"]) == ("tune", method, "1024", format_setting(setting))
    }
    assert set(seeds) <= set(values), (method, setting, sorted(values))
    return sum(values[seed] for seed in seeds) / len(seeds)


def tuning_sentences() -> dict[str, str]:
    """docs/comparison.md's reading of the v3 tuning at q = 1024 against v2's choices."""
    from sfrik_experiments.engine.study_choices import V2_CHOICES

    main = study_choices().main
    kept = [m for m in ("sfrik", *BASELINES) if main[m] == V2_CHOICES[m]]
    moved = [m for m in ("sfrik", *BASELINES) if m not in kept]
    sentences = {"kept": f"The confirmation keeps the v2 choice of {names(kept)}"}
    assert moved == ["barlow_twins", "sigreg"], moved
    vicreg = main["vicreg"]
    sentences["vicreg"] = (
        f"VICReg's choice holds, but its seed-10 score ({tune_mean('vicreg', vicreg, (10,)):.2f}) was a lucky draw: "
        f"over seeds 10-12 its mean is {tune_mean('vicreg', vicreg):.2f}"
    )
    new, old = main["barlow_twins"], V2_CHOICES["barlow_twins"]
    test_new = summary("barlow_twins")
    test_old = summary("barlow_twins", record=STUDY_V2)
    sentences["barlow"] = (
        f"It moves Barlow Twins' learning rate from {old['lr']:g} to {new['lr']:g}, the top rung of its grid, on "
        f"a mean of {tune_mean('barlow_twins', new):.2f} against {tune_mean('barlow_twins', old):.2f}; on the test "
        f"split the new choice scores {test_new.mean:.2f} (seeds 0-9) where v2's scored {test_old.mean:.2f} "
        "(seeds 0-4)"
    )
    new, old = main["sigreg"], V2_CHOICES["sigreg"]
    sentences["sigreg"] = (
        f"SIGReg's lambda, at the bottom of its cap in v2 ({old['lambda_param']:g}), gained the cap rule's two "
        f"rungs below it; the confirmation chooses lambda {new['lambda_param']:g} (mean "
        f"{tune_mean('sigreg', new):.2f} against {tune_mean('sigreg', old):.2f} for v2's)"
    )
    return sentences


def comparison_sentences() -> dict[str, str]:
    """docs/comparison.md's plain readings of the final runs, the q table and the ablations."""
    return {**reading_sentences(), **q_sentences(), **ablation_sentences()}


def ablation_values(metric: str = "linear_top1", record: str = STUDY) -> dict[str, dict[int, float]]:
    """variant label -> seed -> test value of metric over the ablation seeds, at each variant's
    chosen setting (L = 3: SFRIK's final runs)."""
    from sfrik_experiments.study.presets import PRESETS
    from sfrik_experiments.study.report_rows import ablation_variants, seed_values

    preset = PRESETS[STUDY_PRESETS[record]]
    rows = recorded(record)
    return {
        label: seed_values(rows, metric, preset.ablation_seeds, match)
        for label, match in ablation_variants(preset, study_choices(record))
    }


def ablation_sentences() -> dict[str, str]:
    """docs/comparison.md's reading of the ablation: each variant against L = 3 and L = 1 against
    the random encoder, paired over seeds 0-4 (scipy's ttest_rel: a check independent of the
    report's statistics)."""
    from scipy import stats as sp

    values = ablation_values()
    l3 = values["Legendre L = 3"]
    random = study_final("linear_top1", "random", 1024)
    seeds = sorted(l3)
    assert seeds == [0, 1, 2, 3, 4] and all(sorted(v) == seeds for v in values.values())

    def paired(a, b):
        d = stats.paired_difference([a[s] for s in seeds], [b[s] for s in seeds])
        return d, sp.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue

    gauss, p_gauss = paired(values["Gaussian exp(-2s(1-t))"], l3)
    l1, p_l1 = paired(values["Legendre L = 1"], random)
    sentences = {
        "gaussian": f"Gaussian − L = 3 = {gauss.mean:+.2f} ± {gauss.std:.2f} points over seeds 0-4 (p {p_gauss:.2f})",
        "l1": f"L = 1 − the random encoder = {l1.mean:+.2f} ± {l1.std:.2f} points (p {p_l1:.3f})",
    }
    return sentences


def ablation_verdicts(metric: str) -> dict[str, str]:
    """variant label -> "L = 3 ahead", "L = 3 behind" or "tie": each variant against L = 3 over seeds
    0-4 (scipy's paired t test), Holm's correction over the variants."""
    from scipy import stats as sp

    values = ablation_values(metric)
    l3 = values.pop("Legendre L = 3")
    tests = {}
    for label, v in values.items():
        a, b = [v[s] for s in sorted(l3)], [l3[s] for s in sorted(l3)]
        tests[label] = (sum(a) / len(a) - sum(b) / len(b), sp.ttest_rel(a, b).pvalue)
    adjusted = stats.holm([p for _, p in tests.values()])
    return {
        label: "tie" if h >= 0.05 else ("L = 3 ahead" if d < 0 else "L = 3 behind")
        for (label, (d, _)), h in zip(tests.items(), adjusted)
    }


if __name__ == "__main__":  # print the sentences, to write or check the README by
    print("\n".join([*reading_sentences().values(), *q_sentences().values()]))

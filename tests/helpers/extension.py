"""The probe that the loading-fault tests (test_extension_loading.py, test_install_faults.py) run in
fresh interpreters: it imports the package with warnings recorded, calls the public API twice,
checks the values, and prints whether the extension loaded and which RuntimeWarnings came."""

import textwrap

PROBE = textwrap.dedent("""
    import warnings, torch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import sfrik_plugin
        t = torch.linspace(-1, 1, 5, dtype=torch.float64)
        a = sfrik_plugin.legendre_series(t, [0.0, 1.0, 2.0], 3)
        b = sfrik_plugin.legendre_series(t, [0.0, 1.0, 2.0], 3, reduction="mean")
    expected = t + 2 * (3 * t**2 - 1) / 2
    assert torch.allclose(a, expected) and torch.allclose(b, expected.mean())
    info = sfrik_plugin.extension_info()
    print("LOADED", info["loaded"])
    print("WARNINGS", len([w for w in caught if issubclass(w.category, RuntimeWarning)]))
    for w in caught:
        print("MESSAGE", w.message)
""")

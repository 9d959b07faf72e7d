"""Adds the plugin's methods to solo-learn's method table (solo.methods.METHODS).

Importing this module needs neither solo-learn nor torch; register_methods() imports them.
"""
import warnings

# name in cfg.method -> (module of sfrik_plugin.solo, class name)
PLUGIN_METHODS = {
    "sfrik": ("sfrik_plugin.solo.sfrik", "SFRIK"),
    "auh": ("sfrik_plugin.solo.auh", "AUH"),
}


def register_methods(methods=None) -> dict:
    """Adds "sfrik" and "auh" to ``methods`` (default: solo.methods.METHODS) and returns it.

    Idempotent. A name already bound to another class (e.g. a future built-in) is left as it is,
    with a warning, so that the plugin never replaces a solo-learn method.
    """
    import importlib

    if methods is None:
        from solo.methods import METHODS as methods

    for name, (module_name, class_name) in PLUGIN_METHODS.items():
        cls = getattr(importlib.import_module(module_name), class_name)
        current = methods.get(name)
        if current is None:
            methods[name] = cls
        elif current is not cls:
            warnings.warn(
                f"sfrik-plugin: solo.methods.METHODS[{name!r}] is already {current.__module__}."
                f"{current.__qualname__}; the plugin's {module_name}.{class_name} was not registered",
                RuntimeWarning,
                stacklevel=2,
            )
    return methods

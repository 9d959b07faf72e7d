"""Hydra SearchPathPlugin: makes the configs of sfrik-plugin (package sfrik_plugin_configs)
visible to every Hydra app, so that solo-learn's ``python main_pretrain.py --config-name sfrik``
finds them without --config-path, registers the configs' OmegaConf resolvers
(``sfrik_plugin.cosine_end`` and ``sfrik_plugin.num_nodes``, hydra_plugins/sfrik_plugin/resolvers.py)
and the plugin's methods ("sfrik", "auh", "simclr_shared") in solo-learn.

Hydra imports this module in every Hydra app: it imports neither torch nor solo-learn, and
reading pkg://sfrik_plugin_configs imports only that data package (no torch either).
"""

import sys
import warnings

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from hydra_plugins.sfrik_plugin.resolvers import register_resolvers

CONFIGS = "pkg://sfrik_plugin_configs"

# at import: Hydra discovers plugins (imports this module) before it composes any config
register_resolvers()


def register_solo_methods() -> None:
    """Adds the plugin's methods to solo.methods.METHODS when solo.methods is already imported; otherwise
    nothing, so an unrelated Hydra app never pays for importing solo-learn and torch.

    solo-learn's main_pretrain.py imports solo.methods at module level, before Hydra runs this
    plugin, and reads METHODS inside its task function, after. Code that imports solo.methods
    later registers with sfrik_plugin.solo.register_methods(). Never fatal: a broken solo-learn
    install must not break unrelated Hydra apps.
    """
    if "solo.methods" not in sys.modules:
        return
    try:
        from sfrik_plugin.solo.registration import register_methods

        register_methods()
    except Exception as err:  # noqa: BLE001 (any import-time failure of solo or its dependencies)
        warnings.warn(
            f"sfrik-plugin: could not register its methods in solo.methods.METHODS: {err!r}",
            RuntimeWarning,
            stacklevel=2,
        )


class SFRIKSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # appended: an app's own configs (its --config-path or primary config dir) keep priority
        search_path.append(provider="sfrik-plugin", path=CONFIGS)
        register_solo_methods()

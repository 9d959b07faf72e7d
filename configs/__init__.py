"""Hydra configs of sfrik-plugin for solo-learn, installed as the package sfrik_plugin_configs and
put on Hydra's search path by hydra_plugins.sfrik_plugin (see README.md in this folder)."""

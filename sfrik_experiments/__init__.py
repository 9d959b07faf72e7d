"""The experiments around the library: the training engine, sfrik-demo, sfrik-study, sfrik-compare and
sfrik-bench. They depend on sfrik_plugin and on the experiments' extras (Lightning, lightly,
matplotlib, scipy: `pip install -e ".[demo,bench]"`); sfrik_plugin never imports them."""

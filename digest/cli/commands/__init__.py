"""One module per noun of the `digest` command; each exports a click ``group``."""

"""The page's tabs, one module each. Every tab lays out its components into the page's shared namespace
(`layout`), then wires its events (`wire`) once every tab exists, so that one tab's action may update
another's outputs (an analysis fills the review queue; the models list fills the Analyse tab's picker)."""

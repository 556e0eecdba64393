"""The page's tabs, one module each. Each lays out its components and returns them as its view
(webapp.tabs.views); then each tab is made with its own view and the views of the tabs its events set
(an analysis fills the review queue; the models list fills the Analyse tab's picker) and wires them."""

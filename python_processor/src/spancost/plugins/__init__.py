"""The plugins that ship with spancost (entry-point group ``spancost.processors``)."""

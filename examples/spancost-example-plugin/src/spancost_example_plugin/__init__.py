"""An example spancost processor plugin; copy it to start your own."""

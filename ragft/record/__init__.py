"""Records: the run record and its files, the experiment table, measured cost, and the content-addressed artefact cache."""

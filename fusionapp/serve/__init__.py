"""`fusionapp serve`: an HTTP API and a small web page over one loaded run."""

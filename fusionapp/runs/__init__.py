"""The run folder: its layout and lock (`layout`), atomic file writes (`files`), loading a trained run
back (`load`) and what `fusionapp info` shows of it (`info`)."""

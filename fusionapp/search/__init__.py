"""`train --time-limit`: a search for the best model within a wall time (Optuna: seeded TPE, trials
pruned by successive halving), an ensemble of its best trials, and its leaderboard."""

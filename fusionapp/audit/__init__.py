"""Auditing a data set: wrong labels, duplicates and leaks, outliers, and what to label next."""

"""Evaluation: the statistics of campaign results (tests, intervals, power) and, to come, campaign reports."""

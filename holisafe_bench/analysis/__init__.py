"""Analysis on stored verdicts and published leaderboards: confidence intervals, judge
agreement, plots, the HTML report. Calls no API."""

"""Analysis on stored verdicts and published leaderboards: confidence intervals, judge
agreement, leaderboard formats. Calls no API."""

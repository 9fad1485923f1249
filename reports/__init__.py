"""Client reports: HTML rendering of findings with evidence (exports and review app to follow)."""

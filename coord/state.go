package coord

// saveState persists the view for a restarted coordinator (issue 3, not
// yet: a restarted coordinator starts a new cluster).
func (c *Coordinator) saveState() {}

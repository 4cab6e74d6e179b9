package sched

import "fmt"

// Policies a process can ask for: Batch (the default of servers and
// gateways) or Normal (leave the policy the process started with).
const (
	Batch  = "batch"
	Normal = "normal"
)

// Check says whether policy is one Apply takes.
func Check(policy string) error {
	switch policy {
	case Batch, Normal:
		return nil
	}
	return fmt.Errorf("must be %s or %s, got %q", Batch, Normal, policy)
}

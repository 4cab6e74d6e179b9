package sched

import "fmt"

// Policies a process can ask for: Batch (the default of servers and
// gateways) or Normal (leave the policy the process started with).
const (
	Batch  = "batch"
	Normal = "normal"
)

// FlagUsage describes a -sched flag.
const FlagUsage = "Linux scheduling policy: batch (SCHED_BATCH: a woken thread does not preempt the running one, so processes sharing a CPU exchange larger batches) or normal (as started)"

// Check says whether policy is one Apply takes.
func Check(policy string) error {
	switch policy {
	case Batch, Normal:
		return nil
	}
	return fmt.Errorf("must be %s or %s, got %q", Batch, Normal, policy)
}

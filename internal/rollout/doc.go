// Package rollout runs the rollout phase of a cube: two-way sync status at a
// glance (Status) and the rollback drill (Rollback) that sends every user back
// to legacy and proves nothing the cube wrote was lost. `shadowcube rollout`
// parses flags and prints; the logic lives here.
package rollout

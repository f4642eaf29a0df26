// Package routes reads the routes file shared by the tap, the shadow
// replayer and the comparator: per legacy service, where its cube is, and per
// route template how to capture, replay and compare its requests. Errors name
// the file, the line and the field, so a typo is fixed in one look.
package routes

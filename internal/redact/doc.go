// Package redact holds the privacy rules every stage applies before anything
// leaves the process: which headers may be published (an allowlist), which
// query parameters, form fields and JSON body paths are removed or replaced
// by an HMAC, and how URLs and errors are written to logs.
//
// The capture stage (publisher) applies them to the legacy request and
// answer; the shadow stage applies the same rules, read from the same
// SHADOWCUBE_* variables (Env), to the cube's and the secondary's answers, so
// nothing redacted from a capture reappears in SHADOW_RESULTS, the DLQ or the
// mismatch store. Stages do not import each other; they share this package.
package redact

package natsx

// APIRetries is the number of JetStream API attempts retried so far.
func APIRetries() int64 { return apiRetries.Load() }

package consumers

import (
	"errors"
	"fmt"
)

// validate checks the sync stage's numeric settings: zero means the
// default (MaxBatch 5000, AckWait 5m, RetryMax 5s), a negative value is an
// error naming the field.
func (c *Config) validate() error {
	var errs []error
	if c.Mapping == nil {
		errs = append(errs, errors.New("sync config: Mapping is required (--mapping / SHADOWCUBE_MAPPING_FILE)"))
	} else if c.SourceURL == "" {
		errs = append(errs, fmt.Errorf("sync config: SourceURL is required (%s) to validate the mapping", c.Mapping.Source.DatabaseURLEnv))
	}
	if c.SequenceInterval < 0 {
		errs = append(errs, fmt.Errorf("sync config: SequenceInterval %s: must be positive (0: default %s)", c.SequenceInterval, DefaultSequenceInterval))
	}
	if c.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("sync config: MaxBatch %d: must be at least 1 (0: default 5000)", c.MaxBatch))
	}
	if c.AckWait < 0 {
		errs = append(errs, fmt.Errorf("sync config: AckWait %s: must be positive (0: default 5m)", c.AckWait))
	}
	if c.RetryMax < 0 {
		errs = append(errs, fmt.Errorf("sync config: RetryMax %s: must be positive (0: default 5s)", c.RetryMax))
	}
	return errors.Join(errs...)
}

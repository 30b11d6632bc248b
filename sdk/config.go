package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// DecodeConfig decodes a plugin's config table into v, refusing unknown keys
// so that a typo in plugins.toml is an error rather than a silent default.
func DecodeConfig(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("plugin config: %w", err)
	}
	return nil
}

package tee

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// MeasurementPolicy lists the launch measurements a relying party accepts:
// one per build of the confidential VM image it trusts (several during a
// roll-out). The file is JSON:
//
//	{"measurements": ["<96 hex digits>", ...]}
type MeasurementPolicy struct {
	Measurements [][]byte
}

// measurementLen is the size of SEV-SNP MEASUREMENT and TDX MRTD (SHA-384).
const measurementLen = 48

// ParseMeasurement decodes one hex measurement of 48 bytes.
func ParseMeasurement(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("measurement %q: not hex", s)
	}
	if len(b) != measurementLen {
		return nil, fmt.Errorf("measurement %q: %d bytes, a SEV-SNP or TDX measurement is %d", s, len(b), measurementLen)
	}
	return b, nil
}

// LoadMeasurementPolicy reads a policy file.
func LoadMeasurementPolicy(path string) (*MeasurementPolicy, error) {
	f, err := os.Open(path) // #nosec G304 -- the relying party names its own policy file
	if err != nil {
		return nil, fmt.Errorf("measurement policy: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("measurement policy %s: %w", path, err)
	}
	p, err := ParseMeasurementPolicy(raw)
	if err != nil {
		return nil, fmt.Errorf("measurement policy %s: %w", path, err)
	}
	return p, nil
}

// ParseMeasurementPolicy decodes a policy strictly: unknown fields, an
// empty list and malformed measurements are refused.
func ParseMeasurementPolicy(raw []byte) (*MeasurementPolicy, error) {
	var doc struct {
		Measurements []string `json:"measurements"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a policy JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the policy object")
	}
	if len(doc.Measurements) == 0 {
		return nil, errors.New(`"measurements" lists no measurement`)
	}
	p := &MeasurementPolicy{}
	for i, s := range doc.Measurements {
		m, err := ParseMeasurement(s)
		if err != nil {
			return nil, fmt.Errorf("measurements[%d]: %w", i, err)
		}
		p.Measurements = append(p.Measurements, m)
	}
	return p, nil
}

package settlement

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/qinba/qinba/internal/apperr"
)

// Registry is the set of policies the service settles with: the embedded
// ones and those of an optional directory of JSON files. For a bill it
// picks the policy in force (InForce): the one whose region is the
// facility's region code and whose [valid_from, valid_to] covers the bill's
// date. Two policies of one region may not overlap in time, so the choice
// is never ambiguous. A Registry is immutable and safe for concurrent use.
type Registry struct {
	policies []*Policy
	sha      map[*Policy][32]byte
	byID     map[string]*Policy
}

// NewRegistry returns a registry of the embedded policies and extra. It
// fails when two policies share an id (unless their sources are identical,
// e.g. a copy of an embedded file) or when two policies of one region
// overlap in time.
func NewRegistry(extra ...*Policy) (*Registry, error) {
	r := &Registry{sha: map[*Policy][32]byte{}, byID: map[string]*Policy{}}
	for _, p := range append(EmbeddedPolicies(), extra...) {
		sum := sha256.Sum256(p.source)
		if old, dup := r.byID[p.id]; dup {
			if r.sha[old] == sum {
				continue
			}
			return nil, fmt.Errorf("two different policies have the id %q", p.id)
		}
		r.byID[p.id] = p
		r.sha[p] = sum
		r.policies = append(r.policies, p)
	}
	sort.Slice(r.policies, func(i, j int) bool {
		a, b := r.policies[i], r.policies[j]
		if a.region != b.region {
			return a.region < b.region
		}
		return a.validFrom.Before(b.validFrom)
	})
	for i := 1; i < len(r.policies); i++ {
		a, b := r.policies[i-1], r.policies[i]
		if a.region == b.region && !b.validFrom.After(a.validTo) {
			return nil, fmt.Errorf("policies %q and %q of region %s overlap (%s–%s and %s–%s)", a.id, b.id, a.region,
				a.validFrom.Format(time.DateOnly), a.validTo.Format(time.DateOnly), b.validFrom.Format(time.DateOnly), b.validTo.Format(time.DateOnly))
		}
	}
	return r, nil
}

// LoadRegistry returns a registry of the embedded policies and every *.json
// file of dir ("" for the embedded ones only).
func LoadRegistry(dir string) (*Registry, error) {
	if dir == "" {
		return NewRegistry()
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("policy directory: %w", err)
	}
	sort.Strings(names)
	var extra []*Policy
	for _, n := range names {
		p, err := LoadPolicyFile(n)
		if err != nil {
			return nil, err
		}
		extra = append(extra, p)
	}
	return NewRegistry(extra...)
}

// Policies returns the registry's policies by region and date.
func (r *Registry) Policies() []*Policy { return append([]*Policy(nil), r.policies...) }

// ByID returns the policy with id.
func (r *Registry) ByID(id string) (*Policy, bool) {
	p, ok := r.byID[id]
	return p, ok
}

// SHA256 returns the SHA-256 of p's source (p must come from r).
func (r *Registry) SHA256(p *Policy) [32]byte { return r.sha[p] }

// ErrNoPolicy is wrapped by InForce's error when no policy covers a bill.
var ErrNoPolicy = errors.New("no policy in force")

// InForce returns the policy of region in force on date, or an apperr
// Conflict wrapping ErrNoPolicy that names the region and the date and
// lists what is loaded for the region.
func (r *Registry) InForce(region string, date time.Time) (*Policy, error) {
	var have []string
	for _, p := range r.policies {
		if p.region != region {
			continue
		}
		if p.Covers(date) {
			return p, nil
		}
		have = append(have, fmt.Sprintf("%s (%s–%s)", p.id, p.validFrom.Format(time.DateOnly), p.validTo.Format(time.DateOnly)))
	}
	msg := fmt.Sprintf("no settlement policy is in force for region %s on %s", region, date.Format(time.DateOnly))
	if len(have) > 0 {
		msg += "; loaded for this region: " + strings.Join(have, ", ")
	} else {
		msg += "; no policy is loaded for this region (add its policy file with --policy-dir)"
	}
	return nil, &apperr.Error{Code: apperr.Conflict, Message: msg, Err: ErrNoPolicy,
		Details: map[string]any{"region": region, "date": date.Format(time.DateOnly)}}
}

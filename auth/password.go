package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/qinba/qinba/internal/apperr"
)

// Password length limits (in characters; the upper limit also bounds the
// work one login request can ask of the server).
const (
	MinPasswordLen = 10
	MaxPasswordLen = 256
)

// HashParams are argon2id's cost parameters. They are stored in every hash,
// so raising them later only affects new hashes (and a login rehashes a
// weaker stored hash).
type HashParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32
	KeyLen  uint32
}

// DefaultHashParams follow OWASP's argon2id recommendation (19 MiB, 2
// passes, 1 lane): about 0.1 s on one core.
var DefaultHashParams = HashParams{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on parameters read back from a stored hash, so a corrupt or
// planted row cannot make one verification take minutes or gigabytes.
const (
	maxHashMemory  = 256 * 1024
	maxHashTime    = 16
	maxHashThreads = 16
)

// hashSlots bounds the number of argon2 computations running at once:
// each holds Memory KiB, and a burst of logins must not exhaust memory.
var hashSlots = make(chan struct{}, max(2, runtime.NumCPU()))

func acquireHashSlot(ctx context.Context) error {
	select {
	case hashSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return apperr.Wrap(apperr.Unavailable, ctx.Err(), "server busy, try again")
	}
}

func releaseHashSlot() { <-hashSlots }

// CheckPassword validates a new password against the policy.
func CheckPassword(password, username string) error {
	n := utf8.RuneCountInString(password)
	switch {
	case !utf8.ValidString(password):
		return apperr.Field("password", "must be valid UTF-8")
	case n < MinPasswordLen:
		return apperr.Field("password", "must be at least %d characters", MinPasswordLen)
	case n > MaxPasswordLen:
		return apperr.Field("password", "must be at most %d characters", MaxPasswordLen)
	case username != "" && strings.EqualFold(password, username):
		return apperr.Field("password", "must not be the username")
	}
	return nil
}

// HashPassword hashes password with argon2id and returns the PHC string
// $argon2id$v=19$m=M,t=T,p=P$SALT$HASH (unpadded standard base64).
func HashPassword(ctx context.Context, password string, p HashParams) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	if err := acquireHashSlot(ctx); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	releaseHashSlot()
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// errBadHash is returned for a stored hash that cannot be parsed.
var errBadHash = errors.New("auth: malformed password hash")

type parsedHash struct {
	HashParams
	salt, key []byte
}

func parseHash(encoded string) (parsedHash, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return parsedHash{}, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return parsedHash{}, errBadHash
	}
	var h parsedHash
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.Memory, &h.Time, &h.Threads); err != nil || n != 3 {
		return parsedHash{}, errBadHash
	}
	if h.Memory < 8*uint32(h.Threads) || h.Memory > maxHashMemory || h.Time < 1 || h.Time > maxHashTime ||
		h.Threads < 1 || h.Threads > maxHashThreads {
		return parsedHash{}, errBadHash
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return parsedHash{}, errBadHash
	}
	if h.key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 128 {
		return parsedHash{}, errBadHash
	}
	h.SaltLen, h.KeyLen = uint32(len(h.salt)), uint32(len(h.key))
	return h, nil
}

// VerifyPassword reports whether password matches the PHC-encoded argon2id
// hash, comparing in constant time. rehash is true when the hash was made
// with weaker parameters than p and should be replaced.
func VerifyPassword(ctx context.Context, password, encoded string, p HashParams) (ok, rehash bool, err error) {
	h, err := parseHash(encoded)
	if err != nil {
		return false, false, err
	}
	if err := acquireHashSlot(ctx); err != nil {
		return false, false, err
	}
	key := argon2.IDKey([]byte(password), h.salt, h.Time, h.Memory, h.Threads, h.KeyLen)
	releaseHashSlot()
	ok = subtle.ConstantTimeCompare(key, h.key) == 1
	rehash = h.Memory < p.Memory || h.Time < p.Time || h.KeyLen < p.KeyLen || h.SaltLen < p.SaltLen
	return ok, rehash, nil
}

// ValidHash reports whether encoded is a usable argon2id PHC string.
func ValidHash(encoded string) bool {
	_, err := parseHash(encoded)
	return err == nil
}

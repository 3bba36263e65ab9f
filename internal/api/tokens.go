package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// TokenStore checks API bearer tokens.
type TokenStore interface {
	// Verify reports whether token is a valid API token.
	Verify(token string) bool
}

// TokenInfo is what is kept of an API token: its name and the SHA-256 of
// the token, never the token itself.
type TokenInfo struct {
	Name      string    `json:"name"`
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
}

// TokensFile is the name of the token file in the daemon's state_dir.
const TokensFile = "api-tokens.json"

// FileTokens keeps token hashes in a JSON file. The daemon re-reads the file
// when it changes, so `token create|rotate|revoke` take effect at once.
type FileTokens struct {
	path string

	mu     sync.Mutex
	seen   os.FileInfo // the file as last read; a rename makes a new one
	hashes [][sha256.Size]byte
}

var _ TokenStore = (*FileTokens)(nil)

// OpenTokens returns the token store kept at path.
func OpenTokens(path string) *FileTokens { return &FileTokens{path: path} }

// Path is the token file.
func (f *FileTokens) Path() string { return f.path }

func (f *FileTokens) read() ([]TokenInfo, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []TokenInfo
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.path, err)
	}
	return out, nil
}

func (f *FileTokens) write(tokens []TokenInfo) error {
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(tokens, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".api-tokens-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.path)
}

func newToken() (string, [sha256.Size]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", [sha256.Size]byte{}, err
	}
	t := "metal_" + base64.RawURLEncoding.EncodeToString(b)
	return t, sha256.Sum256([]byte(t)), nil
}

// Create adds a token named name and returns it; only its hash is kept.
func (f *FileTokens) Create(name string) (string, error) {
	if name == "" {
		return "", errors.New("a token needs a name")
	}
	tokens, err := f.read()
	if err != nil {
		return "", err
	}
	if slices.ContainsFunc(tokens, func(t TokenInfo) bool { return t.Name == name }) {
		return "", fmt.Errorf("a token named %q exists: rotate or revoke it", name)
	}
	tok, sum, err := newToken()
	if err != nil {
		return "", err
	}
	tokens = append(tokens, TokenInfo{Name: name, SHA256: hex.EncodeToString(sum[:]), CreatedAt: time.Now().UTC()})
	return tok, f.write(tokens)
}

// Rotate replaces token name with a new one and returns it; the old one
// stops working at once.
func (f *FileTokens) Rotate(name string) (string, error) {
	tokens, err := f.read()
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(tokens, func(t TokenInfo) bool { return t.Name == name })
	if i < 0 {
		return "", fmt.Errorf("no token named %q", name)
	}
	tok, sum, err := newToken()
	if err != nil {
		return "", err
	}
	tokens[i].SHA256, tokens[i].CreatedAt = hex.EncodeToString(sum[:]), time.Now().UTC()
	return tok, f.write(tokens)
}

// Revoke deletes token name.
func (f *FileTokens) Revoke(name string) error {
	tokens, err := f.read()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(tokens, func(t TokenInfo) bool { return t.Name == name })
	if i < 0 {
		return fmt.Errorf("no token named %q", name)
	}
	return f.write(slices.Delete(tokens, i, i+1))
}

// List returns the tokens (names and hashes).
func (f *FileTokens) List() ([]TokenInfo, error) { return f.read() }

// Verify compares token's hash with every stored hash in constant time,
// re-reading the file when it changed.
func (f *FileTokens) Verify(token string) bool {
	if token == "" {
		return false
	}
	f.mu.Lock()
	if fi, err := os.Stat(f.path); err != nil {
		f.hashes, f.seen = nil, nil
	} else if f.seen == nil || !os.SameFile(f.seen, fi) || !fi.ModTime().Equal(f.seen.ModTime()) || fi.Size() != f.seen.Size() {
		tokens, err := f.read()
		if err == nil {
			f.hashes = f.hashes[:0]
			for _, t := range tokens {
				var h [sha256.Size]byte
				if b, err := hex.DecodeString(t.SHA256); err == nil && len(b) == sha256.Size {
					copy(h[:], b)
					f.hashes = append(f.hashes, h)
				}
			}
			f.seen = fi
		}
	}
	hashes := f.hashes
	f.mu.Unlock()
	sum := sha256.Sum256([]byte(token))
	ok := 0
	for _, h := range hashes {
		ok |= subtle.ConstantTimeCompare(h[:], sum[:])
	}
	return ok == 1
}

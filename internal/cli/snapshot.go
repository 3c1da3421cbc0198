package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/snapshot"
)

// progressEvery is how often a long snapshot or restore reports progress.
const progressEvery = 2 * time.Second

func opSnapshot(g *globals, args []string) error {
	return sub(g, "operator snapshot", args, map[string]func(*globals, []string) error{
		"save": snapSave, "restore": snapRestore, "inspect": snapInspect,
	})
}

// snapSave downloads a snapshot, verifying it as it arrives, and renames it
// into place only when it is complete and intact.
func snapSave(g *globals, args []string) error {
	pos, err := g.flags("operator snapshot save", args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: moonvault operator snapshot save FILE"}
	}
	file := pos[0]
	c, err := newClient(g)
	if err != nil {
		return err
	}
	resp, err := c.stream("GET", "/v1/sys/storage/snapshot", nil, -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".partial-*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	sum := sha256.New()
	cnt := &countingReader{r: resp.Body}
	p := newProgress(g, "snapshot")
	hdr, err := snapshot.Read(context.Background(), io.TeeReader(io.TeeReader(cnt, tmp), sum), snapshot.Handler{
		Header: func(h *snapshot.Header) error { p.total = h.Records; return nil },
		Record: func(string, []byte) error { p.add(1, cnt.n); return nil },
	})
	if err != nil {
		return fmt.Errorf("the snapshot received is not intact, nothing was saved: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	done = true
	p.finish(cnt.n)
	return g.print(summary(file, hdr, cnt.n, sum.Sum(nil)))
}

// snapRestore checks the file locally, then uploads it.
func snapRestore(g *globals, args []string) error {
	var force bool
	pos, err := g.flags("operator snapshot restore", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&force, "force", false, "confirm the restore: replace this vault's data with another vault's snapshot (a new vault: init it first and use its root token), or roll it back to an older snapshot of its own")
	})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: moonvault operator snapshot restore [-force] FILE"}
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := snapshot.Read(context.Background(), f, snapshot.Handler{}); err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	p := newProgress(g, "restore")
	p.totalBytes = st.Size()
	body := &countingReader{r: f, tick: func(n int64) { p.add(0, n) }}
	path := "/v1/sys/storage/restore"
	if force {
		path += "?" + url.Values{"force": {"true"}}.Encode()
	}
	resp, err := c.stream("POST", path, body, st.Size())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	p.finish(st.Size())
	if g.format == "json" {
		return g.print(out)
	}
	if err := g.print(out); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, "\nThe vault is sealed. It unseals as the snapshot's vault did: by itself with the same HSM key, or with `moonvault operator unseal` and that vault's unseal key shares.\nThe replaced data is kept as replaced_copy until kept_until (docs/operations.md, \"Undo a restore\").")
	return nil
}

// snapInspect verifies a snapshot file offline and shows its header.
func snapInspect(g *globals, args []string) error {
	pos, err := g.flags("operator snapshot inspect", args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: moonvault operator snapshot inspect FILE"}
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	sum := sha256.New()
	cnt := &countingReader{r: f}
	hdr, err := snapshot.Read(context.Background(), io.TeeReader(cnt, sum), snapshot.Handler{})
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	return g.print(summary(pos[0], hdr, cnt.n, sum.Sum(nil)))
}

func summary(file string, h *snapshot.Header, size int64, fileSum []byte) map[string]any {
	return map[string]any{
		"file": file, "bytes": size, "records": h.Records, "storage": h.Storage, "seal": h.Seal,
		"term": h.Term, "created_at": h.CreatedAt.Format(time.RFC3339), "format": h.Format,
		"signing_public_key": hex.EncodeToString(h.PublicKey), "file_sha256": hex.EncodeToString(fileSum),
		"verified": true,
	}
}

// stream sends a request whose body (and answer) may be large: no overall
// timeout, only the dial and TLS handshake are bounded.
func (c *client) stream(method, path string, body io.Reader, size int64) (*http.Response, error) {
	if !strings.HasPrefix(c.addr, "https://") {
		return nil, errors.New("MOONVAULT_ADDR must be an https:// address (Moon Vault serves HTTPS only)")
	}
	req, err := http.NewRequest(method, c.addr+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.ContentLength = size
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("request %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, decodeError(resp, raw)
	}
	return resp, nil
}

type countingReader struct {
	r    io.Reader
	n    int64
	tick func(n int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.tick != nil && n > 0 {
		c.tick(c.n)
	}
	return n, err
}

// progress prints a line to stderr at most every progressEvery, so short
// runs stay quiet and long ones show they are moving.
type progress struct {
	g          *globals
	what       string
	total      int64
	totalBytes int64
	records    int64
	start      time.Time
	last       time.Time
	printed    bool
}

func newProgress(g *globals, what string) *progress {
	now := time.Now()
	return &progress{g: g, what: what, start: now, last: now}
}

func (p *progress) add(records, bytes int64) {
	p.records += records
	if time.Since(p.last) < progressEvery {
		return
	}
	p.last = time.Now()
	p.printed = true
	switch {
	case p.total > 0:
		fmt.Fprintf(p.g.stderr, "%s: %d/%d records (%d%%), %s\n", p.what, p.records, p.total, p.records*100/p.total, mib(bytes))
	case p.totalBytes > 0:
		fmt.Fprintf(p.g.stderr, "%s: %s of %s sent (%d%%)\n", p.what, mib(bytes), mib(p.totalBytes), bytes*100/p.totalBytes)
	default:
		fmt.Fprintf(p.g.stderr, "%s: %s\n", p.what, mib(bytes))
	}
}

func (p *progress) finish(bytes int64) {
	if p.printed {
		fmt.Fprintf(p.g.stderr, "%s: done, %s in %s\n", p.what, mib(bytes), time.Since(p.start).Round(time.Millisecond))
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

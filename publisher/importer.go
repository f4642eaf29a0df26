package publisher

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

// Import formats and error policies.
const (
	FormatJSONL    = "jsonl"
	FormatHAR      = "har"
	FormatGoReplay = "gor"  // GoReplay's file output (--output-file), gzipped or not
	FormatPcap     = "pcap" // pcap/pcapng: read by package publisher/sniff, not by Import

	OnErrorSkip  = "skip"  // report the bad line and go on
	OnErrorFatal = "fatal" // stop at the first bad line
)

// ImportConfig configures one import.
type ImportConfig struct {
	// Format is FormatJSONL, FormatHAR or FormatGoReplay; empty guesses
	// from the file name (see GuessFormat). Any of them may be gzipped.
	Format string
	// OnError is OnErrorSkip (default) or OnErrorFatal.
	OnError string
	// Progress, when set, is called now and then with the bytes read so far
	// and the events queued so far.
	Progress func(bytesRead, events int64)
	// KeyedUserKeys accepts records that carry a user_key, which must then be
	// a key made with this secret ("hmac-sha256:" + 64 hex digits). Without
	// it such records are bad: a raw user id put in user_key would be
	// published as it is. Raw ids belong in the user header, which import
	// turns into keys.
	KeyedUserKeys bool
}

// LineError is one bad record of an import file: at a line (JSONL, HAR)
// or, for binary-framed formats (GoReplay), at a byte offset (Line 0; of
// the decompressed stream for a gzipped file); Line 0 and Offset -1 speak
// of the whole file.
type LineError struct {
	File   string
	Line   int
	Offset int64
	Msg    string
}

func (e *LineError) Error() string {
	if e.Line == 0 && e.Offset < 0 { // about the whole file
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	if e.Line == 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Offset, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// GuessFormat returns the format a file name suggests: .har → HAR, .gor →
// GoReplay, .pcap/.pcapng/.cap → pcap, anything else JSONL (a trailing .gz
// is looked through).
func GuessFormat(name string) string {
	n := strings.ToLower(strings.TrimSuffix(strings.ToLower(name), ".gz"))
	switch filepath.Ext(n) {
	case ".har":
		return FormatHAR
	case ".gor":
		return FormatGoReplay
	case ".pcap", ".pcapng", ".cap":
		return FormatPcap
	}
	return FormatJSONL
}

// ImportResult counts what an import did.
type ImportResult struct {
	Events int          // events queued for publishing
	Bad    []*LineError // bad records (skipped, or the fatal one)
}

// ErrBadRecord is wrapped by Import's error when OnError is fatal and a
// record is bad; the LineError names file and line.
var ErrBadRecord = errors.New("bad import record")

// Import reads recorded traffic from r (named name in errors) and queues it
// for publishing through the capturer, waiting for queue space. Events get
// the same privacy treatment as tapped ones; an event without id gets one
// derived from its content (so re-importing is de-duplicated by JetStream's
// Nats-Msg-Id within the stream's duplicate window). Call Flush afterwards
// to wait for the acks.
func (c *Capturer) Import(ctx context.Context, name string, r io.Reader, cfg ImportConfig) (ImportResult, error) {
	format := cfg.Format
	if format == "" {
		format = GuessFormat(name)
	}
	switch cfg.OnError {
	case "":
		cfg.OnError = OnErrorSkip
	case OnErrorSkip, OnErrorFatal:
	default:
		return ImportResult{}, fmt.Errorf("import: on-error %q: want %s or %s", cfg.OnError, OnErrorSkip, OnErrorFatal)
	}
	imp := &importer{c: c, name: name, cfg: cfg}
	if format == FormatJSONL || format == FormatHAR || format == FormatGoReplay {
		br := bufio.NewReaderSize(r, 256<<10)
		if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
			zr, err := gzip.NewReader(br)
			if err != nil {
				return ImportResult{}, fmt.Errorf("import %s: gzip: %w", name, err)
			}
			defer zr.Close()
			r = zr
		} else {
			r = br
		}
	}
	switch format {
	case FormatJSONL:
		return imp.res, imp.jsonl(ctx, r)
	case FormatHAR:
		return imp.res, imp.har(ctx, r)
	case FormatGoReplay:
		return imp.res, imp.gor(ctx, r)
	case FormatPcap:
		return ImportResult{}, fmt.Errorf("import %s: pcap files are read by package publisher/sniff (shadowcube import does it)", name)
	}
	return ImportResult{}, fmt.Errorf("import: format %q: want %s, %s, %s or %s", format, FormatJSONL, FormatHAR, FormatGoReplay, FormatPcap)
}

type importer struct {
	c    *Capturer
	name string
	cfg  ImportConfig
	res  ImportResult
	read int64
}

// badAt records a bad record at a byte offset; it returns an error when
// the import must stop.
func (imp *importer) badAt(off int64, format string, args ...any) error {
	le := &LineError{File: imp.name, Offset: off, Msg: fmt.Sprintf(format, args...)}
	imp.res.Bad = append(imp.res.Bad, le)
	if imp.cfg.OnError == OnErrorFatal {
		return fmt.Errorf("%w: %w", ErrBadRecord, le)
	}
	return nil
}

// bad records a bad line; it returns an error when the import must stop.
func (imp *importer) bad(line int, format string, args ...any) error {
	le := &LineError{File: imp.name, Line: line, Msg: fmt.Sprintf(format, args...)}
	imp.res.Bad = append(imp.res.Bad, le)
	if imp.cfg.OnError == OnErrorFatal {
		return fmt.Errorf("%w: %w", ErrBadRecord, le)
	}
	return nil
}

func (imp *importer) enqueue(ctx context.Context, ev *schemas.RequestEvent) error {
	if err := imp.c.Enqueue(ctx, ev); err != nil {
		return fmt.Errorf("import %s: %w", imp.name, err)
	}
	imp.res.Events++
	if imp.cfg.Progress != nil && imp.res.Events%500 == 0 {
		imp.cfg.Progress(imp.read, int64(imp.res.Events))
	}
	return nil
}

// complete fills what an imported event may lack and validates it.
func (imp *importer) complete(ev *schemas.RequestEvent, raw []byte) error {
	if ev.ID == "" {
		sum := sha256.Sum256(raw)
		ev.ID = "imp-" + hex.EncodeToString(sum[:16])
	}
	if ev.V == "" {
		ev.V = schemas.Version
	} else if maj, _, _ := strings.Cut(ev.V, "."); maj != "1" {
		return fmt.Errorf("version %q: this build reads 1.x", ev.V)
	}
	ev.V = schemas.Version
	if ev.Service == "" {
		ev.Service = imp.c.cfg.Service
	}
	if ev.Route == "" && ev.Path != "" {
		ev.Route = OtherRoute
		if imp.c.cfg.Routes != nil && ev.Service == imp.c.cfg.Service {
			if r, ok := imp.c.cfg.Routes.Match(ev.Method, ev.Path); ok {
				ev.Route = r.Route
			}
		}
	}
	if ev.UserKey != "" {
		if !imp.cfg.KeyedUserKeys {
			return errors.New("user_key is set: import keys raw user ids from the user header itself; if these are user keys made with this SHADOWCUBE_USER_KEY_SECRET, pass --keyed-user-keys")
		}
		if !isUserKey(ev.UserKey) {
			return fmt.Errorf("user_key is not a user key (want %s followed by 64 hex digits); a raw user id belongs in the user header", UserKeyPrefix)
		}
	}
	ev.Source = schemas.SourceImport
	if ev.TraceParent == "" {
		ev.TraceParent = ev.Headers.Get("Traceparent")
	}
	if int64(len(ev.Body)) > imp.c.cfg.MaxBody {
		ev.Body, ev.BodyTruncated = ev.Body[:imp.c.cfg.MaxBody], true
	}
	if int64(len(ev.Response.Body)) > imp.c.cfg.MaxBody {
		ev.Response.Body, ev.Response.BodyTruncated = ev.Response.Body[:imp.c.cfg.MaxBody], true
	}
	if err := ev.Validate(); err != nil {
		return err
	}
	return nil
}

// isUserKey reports whether s has the form of a user key.
func isUserKey(s string) bool {
	h, ok := strings.CutPrefix(s, UserKeyPrefix)
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

func (imp *importer) jsonl(ctx context.Context, r io.Reader) error {
	br := bufio.NewReaderSize(r, 256<<10)
	for line := 1; ; line++ {
		raw, err := br.ReadBytes('\n')
		imp.read += int64(len(raw))
		if len(raw) == 0 && err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("import %s: read line %d: %w", imp.name, line, err)
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] == '#' {
			continue
		}
		if len(raw) > schemas.MaxEventSize {
			if err := imp.bad(line, "line of %d bytes exceeds the event limit of %d", len(raw), schemas.MaxEventSize); err != nil {
				return err
			}
			continue
		}
		var ev schemas.RequestEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			if err := imp.bad(line, "not a JSON request event: %v", err); err != nil {
				return err
			}
			continue
		}
		if err := imp.complete(&ev, raw); err != nil {
			if err := imp.bad(line, "%v", err); err != nil {
				return err
			}
			continue
		}
		if err := imp.enqueue(ctx, &ev); err != nil {
			return err
		}
	}
}

// HAR 1.2, the parts we read.
type harEntry struct {
	StartedDateTime time.Time `json:"startedDateTime"`
	Time            float64   `json:"time"`
	Request         struct {
		Method   string      `json:"method"`
		URL      string      `json:"url"`
		Headers  []harHeader `json:"headers"`
		PostData *struct {
			MimeType string `json:"mimeType"`
			Text     string `json:"text"`
			Encoding string `json:"encoding"`
		} `json:"postData"`
	} `json:"request"`
	Response struct {
		Status  int         `json:"status"`
		Headers []harHeader `json:"headers"`
		Content struct {
			Text     string `json:"text"`
			Encoding string `json:"encoding"`
		} `json:"content"`
	} `json:"response"`
}

type harHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func harHeaders(hs []harHeader) http.Header {
	if len(hs) == 0 {
		return nil
	}
	h := http.Header{}
	for _, x := range hs {
		if strings.HasPrefix(x.Name, ":") { // HTTP/2 pseudo headers
			continue
		}
		h.Add(x.Name, x.Value)
	}
	return h
}

func harText(text, encoding string) ([]byte, error) {
	if encoding == "base64" {
		return base64.StdEncoding.DecodeString(text)
	}
	if text == "" {
		return nil, nil
	}
	return []byte(text), nil
}

func (imp *importer) har(ctx context.Context, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("import %s: %w", imp.name, err)
	}
	imp.read = int64(len(data))
	lineAt := func(off int64) int { return 1 + bytes.Count(data[:min(off, int64(len(data)))], []byte("\n")) }
	dec := json.NewDecoder(bytes.NewReader(data))
	fatal := func(off int64, msg string) error {
		le := &LineError{File: imp.name, Line: lineAt(off), Msg: msg}
		imp.res.Bad = append(imp.res.Bad, le)
		return fmt.Errorf("%w: %w", ErrBadRecord, le)
	}
	// Walk to log.entries.
	if err := harDescend(dec, "log"); err != nil {
		return fatal(dec.InputOffset(), "not a HAR file: "+err.Error())
	}
	if err := harDescend(dec, "entries"); err != nil {
		return fatal(dec.InputOffset(), "not a HAR file: "+err.Error())
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return fatal(dec.InputOffset(), "log.entries is not a list")
	}
	for i := 0; dec.More(); i++ {
		off := dec.InputOffset()
		// The offset is just after the previous token: skip to the entry.
		for off < int64(len(data)) && strings.ContainsRune(" \t\r\n,", rune(data[off])) {
			off++
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fatal(off, fmt.Sprintf("entry %d: invalid JSON: %v", i, err))
		}
		line := lineAt(off)
		ev, err := harEvent(raw)
		if err == nil {
			err = imp.complete(ev, raw)
		}
		if err != nil {
			if err := imp.bad(line, "entry %d: %v", i, err); err != nil {
				return err
			}
			continue
		}
		if err := imp.enqueue(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// harDescend reads tokens of the current object until key, leaving the
// decoder before its value.
func harDescend(dec *json.Decoder, key string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("want an object holding %q", key)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if tok == key {
			return nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return fmt.Errorf("no %q field", key)
}

func harEvent(raw []byte) (*schemas.RequestEvent, error) {
	var e harEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, err
	}
	u, err := url.Parse(e.Request.URL)
	if err != nil || e.Request.URL == "" {
		return nil, fmt.Errorf("request.url %q is not a URL", e.Request.URL)
	}
	ev := &schemas.RequestEvent{
		Method:     e.Request.Method,
		Path:       u.EscapedPath(),
		Query:      u.RawQuery,
		Headers:    harHeaders(e.Request.Headers),
		CapturedAt: e.StartedDateTime,
		Response: schemas.HTTPResponse{
			Status:  e.Response.Status,
			Headers: harHeaders(e.Response.Headers),
			Latency: time.Duration(e.Time * float64(time.Millisecond)),
		},
	}
	if ev.Path == "" {
		ev.Path = "/"
	}
	if ev.Path[0] != '/' {
		return nil, fmt.Errorf("request.url %q is not an absolute URL", e.Request.URL)
	}
	if pd := e.Request.PostData; pd != nil {
		if ev.Body, err = harText(pd.Text, pd.Encoding); err != nil {
			return nil, fmt.Errorf("request.postData: %v", err)
		}
	}
	if ev.Response.Body, err = harText(e.Response.Content.Text, e.Response.Content.Encoding); err != nil {
		return nil, fmt.Errorf("response.content: %v", err)
	}
	if ev.Response.Latency < 0 {
		ev.Response.Latency = 0
	}
	return ev, nil
}

package routes

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/theory/jsonpath"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"
	"github.com/vektah/gqlparser/v2/parser"
)

// Classifier tells reads from writes by a request's content, for routes where
// one URL carries both (GraphQL, JSON-RPC, batch endpoints). Without it a
// request is a read when its method is GET, HEAD or OPTIONS.
type Classifier struct {
	// GraphQL classifies by the operation type of the parsed GraphQL
	// document (the JSON body's query and operationName, a JSON array of
	// such (batch), an application/graphql body, or the query and
	// operationName URL parameters of a GET): query is a read; mutation
	// and subscription are writes, and so is a document that does not
	// parse or whose operation cannot be selected. A batch is a read only
	// when every operation in it is a query.
	GraphQL bool `yaml:"graphql"`
	// WriteWhen makes a request a write when it holds (checked first).
	WriteWhen *BodyCondition `yaml:"write_when"`
	// ReadWhen makes a request a read when it holds.
	ReadWhen *BodyCondition `yaml:"read_when"`
}

// BodyCondition is a condition on a request body: with Path, it holds when
// the JSONPath (RFC 9535) selects a value of the JSON body, and, with Match
// too, when the text of a selected value (a string as is, anything else as
// JSON) matches the regular expression; with Match alone, when the raw body
// matches it. A body that is not JSON never satisfies a Path condition.
type BodyCondition struct {
	Path  string `yaml:"path"`
	Match string `yaml:"match"`

	path *jsonpath.Path
	re   *regexp.Regexp
}

// compile parses Path and Match; it is idempotent.
func (c *BodyCondition) compile() error {
	var errs []error
	if c.Path == "" && c.Match == "" {
		return errors.New("give path (a JSONPath like $.method), match (a regular expression), or both")
	}
	if c.Path != "" && c.path == nil {
		p, err := jsonpath.Parse(c.Path)
		if err != nil {
			errs = append(errs, fmt.Errorf("path %q: %v", c.Path, err))
		}
		c.path = p
	}
	if c.Match != "" && c.re == nil {
		re, err := regexp.Compile(c.Match)
		if err != nil {
			errs = append(errs, fmt.Errorf("match %q: %v", c.Match, err))
		}
		c.re = re
	}
	return errors.Join(errs...)
}

// holds reports whether the condition holds for body; doc is the body
// decoded as JSON (decoded on first need, shared between conditions).
func (c *BodyCondition) holds(body []byte, doc *jsonDoc) bool {
	if c.compile() != nil {
		return false
	}
	if c.path == nil {
		return c.re.Match(body)
	}
	v, ok := doc.get(body)
	if !ok {
		return false
	}
	for n := range c.path.Select(v).All() {
		if c.re == nil || c.re.MatchString(valueText(n)) {
			return true
		}
	}
	return false
}

// jsonDoc decodes a body as JSON once.
type jsonDoc struct {
	done bool
	ok   bool
	v    any
}

func (d *jsonDoc) get(body []byte) (any, bool) {
	if !d.done {
		d.done = true
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		d.ok = dec.Decode(&d.v) == nil
	}
	return d.v, d.ok
}

// valueText is a JSON value as text: a string as is, anything else as JSON.
func valueText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// Reasons Classify gives for its verdict.
const (
	ClassMethod           = "method"           // by the HTTP method (no classifier, or none applies)
	ClassReadWhen         = "read_when"        // the route's read_when condition holds
	ClassWriteWhen        = "write_when"       // the route's write_when condition holds
	ClassGraphQLQuery     = "graphql-query"    // every selected GraphQL operation is a query
	ClassGraphQLMutation  = "graphql-mutation" // a selected operation is a mutation
	ClassGraphQLSubscribe = "graphql-subscription"
	ClassGraphQLInvalid   = "graphql-invalid" // no document, a parse error, or no operation selected
)

// Classify reports whether a request to this route is a read (free of side
// effects on the server) and why. method is the HTTP method, rawQuery the
// URL query string (GraphQL over GET), body the request body. Anything the
// route's classifier cannot establish as a read is a write.
func (r *Route) Classify(method, rawQuery string, body []byte) (read bool, reason string) {
	c := r.Classifier
	if c != nil && c.GraphQL {
		ops, err := graphQLOperations(method, rawQuery, body)
		if err != nil {
			return false, ClassGraphQLInvalid
		}
		for _, op := range ops {
			switch op.op.Operation {
			case ast.Mutation:
				return false, ClassGraphQLMutation
			case ast.Subscription:
				return false, ClassGraphQLSubscribe
			}
		}
		return true, ClassGraphQLQuery
	}
	if c != nil && (c.WriteWhen != nil || c.ReadWhen != nil) {
		var doc jsonDoc
		if c.WriteWhen != nil && c.WriteWhen.holds(body, &doc) {
			return false, ClassWriteWhen
		}
		if c.ReadWhen != nil && c.ReadWhen.holds(body, &doc) {
			return true, ClassReadWhen
		}
	}
	return SafeMethod(method), ClassMethod
}

// SafeMethod reports whether an HTTP method is read-only by definition
// (GET, HEAD, OPTIONS).
func SafeMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

// Operation key kinds of Route.Operation (besides a JSONPath).
const (
	OperationGraphQL     = "graphql"      // operation name; a hash of the document when anonymous
	OperationGraphQLHash = "graphql-hash" // always the hash of the normalised document
)

// OperationKey returns the route's operation key for a request body: what
// signatures, noise statistics and reports group by on single-endpoint APIs.
// With operation: graphql it is the selected operation's name, or, for an
// anonymous operation, "sha256:" and the first 16 hex digits of the SHA-256
// of the normalised document (the operation and every fragment, printed
// compactly by the GraphQL formatter, so whitespace, comments and field
// spacing do not matter); with graphql-hash always that hash; with a
// JSONPath the text of the first value it selects in the JSON body. A batch
// (a JSON array of GraphQL requests) joins the keys of its operations with
// "+". It is "" when the route defines no operation key or the body does not
// yield one. The result depends on the route and the body only, so every
// stage computes the same key.
func (r *Route) OperationKey(body []byte) string {
	return r.OperationKeyOf("", "", body)
}

// OperationKeyOf is OperationKey for a whole request: a GraphQL GET carries
// its document in the query and operationName URL parameters of rawQuery.
func (r *Route) OperationKeyOf(method, rawQuery string, body []byte) string {
	switch r.Operation {
	case "":
		return ""
	case OperationGraphQL, OperationGraphQLHash:
		ops, err := graphQLOperations(method, rawQuery, body)
		if err != nil {
			return ""
		}
		keys := make([]string, len(ops))
		for i, op := range ops {
			if r.Operation == OperationGraphQL && op.op.Name != "" {
				keys[i] = op.op.Name
			} else {
				keys[i] = op.hash()
			}
		}
		return strings.Join(keys, "+")
	}
	p := r.opPath
	if p == nil {
		var err error
		if p, err = jsonpath.Parse(r.Operation); err != nil {
			return ""
		}
	}
	var doc jsonDoc
	v, ok := doc.get(body)
	if !ok {
		return ""
	}
	for n := range p.Select(v).All() {
		return valueText(n)
	}
	return ""
}

// gqlOp is one selected operation of a GraphQL request with its document.
type gqlOp struct {
	doc *ast.QueryDocument
	op  *ast.OperationDefinition
}

// hash is "sha256:" + 16 hex digits of the normalised operation and the
// document's fragments.
func (o gqlOp) hash() string {
	var b strings.Builder
	formatter.NewFormatter(&b, formatter.WithCompacted()).FormatQueryDocument(&ast.QueryDocument{
		Operations: ast.OperationList{o.op},
		Fragments:  o.doc.Fragments,
	})
	sum := sha256.Sum256([]byte(b.String()))
	return "sha256:" + hex.EncodeToString(sum[:8])
}

type gqlRequest struct {
	Query         string `json:"query"`
	OperationName string `json:"operationName"`
}

// graphQLOperations parses a GraphQL request and selects its operation(s).
func graphQLOperations(method, rawQuery string, body []byte) ([]gqlOp, error) {
	var reqs []gqlRequest
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		if method != "" && method != http.MethodGet {
			return nil, errors.New("no GraphQL document")
		}
		q, err := url.ParseQuery(rawQuery)
		if err != nil || q.Get("query") == "" {
			return nil, errors.New("no GraphQL document")
		}
		reqs = []gqlRequest{{Query: q.Get("query"), OperationName: q.Get("operationName")}}
	case trimmed[0] == '{':
		var one gqlRequest
		if err := json.Unmarshal(trimmed, &one); err != nil {
			return nil, err
		}
		reqs = []gqlRequest{one}
	case trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &reqs); err != nil {
			return nil, err
		}
		if len(reqs) == 0 {
			return nil, errors.New("empty GraphQL batch")
		}
	default: // application/graphql: the document itself
		reqs = []gqlRequest{{Query: string(trimmed)}}
	}
	ops := make([]gqlOp, 0, len(reqs))
	for _, q := range reqs {
		if strings.TrimSpace(q.Query) == "" {
			return nil, errors.New("no GraphQL document")
		}
		doc, err := parser.ParseQuery(&ast.Source{Input: q.Query})
		if err != nil {
			return nil, err
		}
		var op *ast.OperationDefinition
		if q.OperationName == "" {
			if len(doc.Operations) != 1 {
				return nil, fmt.Errorf("%d operations and no operationName", len(doc.Operations))
			}
			op = doc.Operations[0]
		} else if op = doc.Operations.ForName(q.OperationName); op == nil {
			return nil, fmt.Errorf("operation %q not in the document", q.OperationName)
		}
		ops = append(ops, gqlOp{doc: doc, op: op})
	}
	return ops, nil
}

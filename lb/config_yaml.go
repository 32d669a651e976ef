package lb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxConfigBytes bounds a config file; real ones are a few KB.
const maxConfigBytes = 4 << 20

// LoadConfig reads and validates the YAML file at path.
func LoadConfig(path string) (*Config, error) { return LoadConfigWith(path, nil) }

// LoadConfigWith is LoadConfig with override called between decoding and
// validation, so command-line flags can override the file.
func LoadConfigWith(path string, override func(*Config)) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return nil, &FieldError{File: path, Msg: "file larger than 4 MiB"}
	}
	return ParseConfigWith(path, data, override)
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// ParseConfig parses YAML config data; file names it in errors. Unknown
// fields are errors, and every error names file, line and field. The result
// has defaults applied and is validated.
func ParseConfig(file string, data []byte) (*Config, error) {
	return ParseConfigWith(file, data, nil)
}

// ParseConfigWith is ParseConfig with override called between decoding and
// validation.
func ParseConfigWith(file string, data []byte, override func(*Config)) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, err)
	}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		err = yamlError(file, err)
		var fe *FieldError
		if errors.As(err, &fe) && fe.Line > 0 {
			fe.Field, fe.Column = fieldAtLine(&root, fe.Line, fe.Msg)
		}
		return nil, err
	}
	if override != nil {
		override(cfg)
	}
	if err := cfg.Validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			fe.File = file
			if n := lookupNode(&root, fe.Field); n != nil {
				fe.Line, fe.Column = n.Line, n.Column
			}
		}
		return nil, err
	}
	cfg.ApplyDefaults()
	return cfg, nil
}

// yamlError turns yaml's messages ("yaml: line 3: ...", or a TypeError's
// list) into file:line: errors; the first one is reported.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			return &FieldError{File: file, Line: line, Msg: cleanYAMLMsg(m[2])}
		}
		return &FieldError{File: file, Msg: cleanYAMLMsg(msg)}
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{File: file, Line: line, Msg: m[2]}
	}
	return &FieldError{File: file, Msg: msg}
}

var (
	fieldNotFoundRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	cannotCollRE    = regexp.MustCompile(`^cannot unmarshal !!(seq|map) into (\S+)$`)
	cannotRE        = regexp.MustCompile("^cannot unmarshal !!\\w+ `(.*)` into (\\S+)$")
)

// typeNames says in words what a Go type expects.
var typeNames = map[string]string{
	"time.Duration": "a duration like 500ms, 30s or 1h",
	"int":           "an integer",
	"int64":         "an integer",
	"float64":       "a number",
	"bool":          "true or false",
	"string":        "a string",
}

func cleanYAMLMsg(msg string) string {
	if m := fieldNotFoundRE.FindStringSubmatch(msg); m != nil {
		return "unknown field " + strconv.Quote(m[1])
	}
	if m := cannotCollRE.FindStringSubmatch(msg); m != nil {
		what := "a list"
		if m[1] == "map" {
			what = "a mapping"
		}
		want, ok := typeNames[m[2]]
		switch {
		case ok:
		case strings.HasPrefix(m[2], "[]"):
			want = "a list"
		default:
			want = "a mapping"
		}
		return what + " where " + want + " belongs"
	}
	if m := cannotRE.FindStringSubmatch(msg); m != nil {
		want, ok := typeNames[m[2]]
		if !ok {
			want = strings.TrimPrefix(strings.TrimPrefix(m[2], "[]"), "lb.")
			if strings.HasPrefix(m[2], "[]") {
				want = "a list"
			} else {
				want = "a mapping (" + want + ")"
			}
		}
		return strconv.Quote(m[1]) + " is not " + want
	}
	// "cannot unmarshal !!str `abc` into int" names Go types; keep it, it
	// is the clearest yaml offers, but drop the package path.
	return strings.ReplaceAll(msg, "lb.", "")
}

// fieldAtLine names the field whose key or value is on line, and its
// column: for an unknown field, the mapping that holds it.
func fieldAtLine(root *yaml.Node, line int, msg string) (string, int) {
	unknown := strings.HasPrefix(msg, "unknown field ")
	// The message quotes the offending value (or key) first; on a line
	// with several fields (flow style) it picks the right one.
	quoted := ""
	if i := strings.IndexByte(msg, '"'); i >= 0 {
		if v, err := strconv.QuotedPrefix(msg[i:]); err == nil {
			quoted, _ = strconv.Unquote(v)
		}
	}
	match := func(n *yaml.Node) bool { return n.Line == line && (quoted == "" || n.Value == quoted) }
	var walk func(n *yaml.Node, path string) (string, int, bool)
	walk = func(n *yaml.Node, path string) (string, int, bool) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if p, col, ok := walk(c, path); ok {
					return p, col, true
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if unknown && match(k) {
					return path, k.Column, true
				}
				if !unknown && quoted == "" && v.Kind != yaml.ScalarNode && v.Line == line {
					return p, v.Column, true // a list or mapping where a scalar belongs
				}
				if !unknown && v.Kind == yaml.ScalarNode && match(v) {
					return p, v.Column, true
				}
				if r, col, ok := walk(v, p); ok {
					return r, col, true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				if !unknown && c.Kind == yaml.ScalarNode && match(c) {
					return p, c.Column, true
				}
				if r, col, ok := walk(c, p); ok {
					return r, col, true
				}
			}
		}
		return "", 0, false
	}
	p, col, _ := walk(root, "")
	return p, col
}

// lookupNode finds the node at a field path like "backends[1].url", or the
// deepest existing node on the way, so an error points as near as it can.
func lookupNode(root *yaml.Node, path string) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if path == "" {
		return n
	}
	for _, seg := range strings.Split(path, ".") {
		name, idx := seg, -1
		if i := strings.IndexByte(seg, '['); i >= 0 && strings.HasSuffix(seg, "]") {
			name = seg[:i]
			idx, _ = strconv.Atoi(seg[i+1 : len(seg)-1])
		}
		if n.Kind != yaml.MappingNode {
			return n
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				next = n.Content[i+1]
				if idx < 0 && next.Kind != yaml.MappingNode {
					// A scalar value: point at it.
					return next
				}
				break
			}
		}
		if next == nil {
			return n
		}
		n = next
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return n
			}
			n = n.Content[idx]
		}
	}
	return n
}

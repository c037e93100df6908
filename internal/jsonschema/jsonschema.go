// Package jsonschema checks JSON values against the small subset of JSON
// Schema (draft 2020-12) that docs/json-schema.json uses: type, const, enum,
// required, properties, additionalProperties: false, items, $ref to #/$defs,
// and a "type"-discriminated oneOf at the top. It exists so tests can hold
// every command's --json output to the documented schema without a
// dependency.
package jsonschema

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// A Schema is a parsed schema document.
type Schema struct {
	root map[string]any
}

// Parse reads a schema document.
func Parse(b []byte) (*Schema, error) {
	var root map[string]any
	if err := json.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("jsonschema: %w", err)
	}
	return &Schema{root: root}, nil
}

// Types lists the event types the schema defines (its $defs with a "type"
// const).
func (s *Schema) Types() []string {
	var out []string
	defs, _ := s.root["$defs"].(map[string]any)
	for name, d := range defs {
		if c := constType(d); c != "" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func constType(d any) string {
	m, _ := d.(map[string]any)
	props, _ := m["properties"].(map[string]any)
	t, _ := props["type"].(map[string]any)
	c, _ := t["const"].(string)
	return c
}

// ValidateLine checks one JSON line: an object whose "type" names one of
// the schema's event definitions.
func (s *Schema) ValidateLine(line []byte) error {
	var v any
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("not a JSON object")
	}
	t, _ := obj["type"].(string)
	defs, _ := s.root["$defs"].(map[string]any)
	for _, d := range defs {
		if constType(d) == t && t != "" {
			return s.validate(d, v, "$")
		}
	}
	return fmt.Errorf("unknown event type %q", t)
}

func (s *Schema) resolve(node map[string]any) map[string]any {
	for {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		name := strings.TrimPrefix(ref, "#/$defs/")
		defs, _ := s.root["$defs"].(map[string]any)
		next, ok := defs[name].(map[string]any)
		if !ok {
			return map[string]any{"not": "unresolved " + ref}
		}
		node = next
	}
}

func (s *Schema) validate(schema any, v any, path string) error {
	node, ok := schema.(map[string]any)
	if !ok {
		return nil
	}
	node = s.resolve(node)
	if why, ok := node["not"].(string); ok {
		return fmt.Errorf("%s: schema error: %s", path, why)
	}
	if t, ok := node["type"]; ok {
		if !typeOK(t, v) {
			return fmt.Errorf("%s: %s is not of type %v", path, show(v), t)
		}
	}
	if c, ok := node["const"]; ok && fmt.Sprint(c) != fmt.Sprint(v) {
		return fmt.Errorf("%s: %s is not %v", path, show(v), c)
	}
	if e, ok := node["enum"].([]any); ok {
		found := false
		for _, x := range e {
			if fmt.Sprint(x) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s: %s is not one of %v", path, show(v), e)
		}
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := node["properties"].(map[string]any)
		if req, ok := node["required"].([]any); ok {
			for _, r := range req {
				if _, ok := v[r.(string)]; !ok {
					return fmt.Errorf("%s: required %q is missing", path, r)
				}
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p, ok := props[k]
			if !ok {
				if ap, ok := node["additionalProperties"]; ok {
					if b, isBool := ap.(bool); isBool && !b {
						return fmt.Errorf("%s: %q is not in the schema", path, k)
					}
					if err := s.validate(ap, v[k], path+"."+k); err != nil {
						return err
					}
				}
				continue
			}
			if err := s.validate(p, v[k], path+"."+k); err != nil {
				return err
			}
		}
	case []any:
		if items, ok := node["items"]; ok {
			for i, x := range v {
				if err := s.validate(items, x, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func typeOK(t any, v any) bool {
	switch t := t.(type) {
	case string:
		return oneType(t, v)
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok && oneType(s, v) {
				return true
			}
		}
	}
	return false
}

func oneType(t string, v any) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		f, err := n.Float64()
		return err == nil && f == math.Trunc(f)
	}
	return false
}

func show(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return string(b)
}

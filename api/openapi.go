package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// servedDocument is the OpenAPI document as this instance serves it. The
// embedded one describes a service with an API key; without a key, the
// operations that would need it declare no security and no 401, so a client
// generated from the served document needs no token to call them.
func servedDocument(embedded string, keyed bool) ([]byte, error) {
	if keyed {
		return []byte(embedded), nil
	}
	var doc object
	if err := json.Unmarshal([]byte(embedded), &doc); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	err := doc.edit("paths", func(paths *object) error {
		for i := range *paths {
			err := (*paths)[i].edit(func(item *object) error {
				for j := range *item {
					if err := (*item)[j].edit(openOperation); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	err = doc.edit("components", func(c *object) error {
		c.delete("securitySchemes")
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	compact, err := doc.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// openOperation drops the security requirement of an operation that has one, and
// the 401 answer that went with it. Path item members that are not
// operations (summary, description, parameters...) are left alone.
func openOperation(op *object) error {
	sec, ok := op.get("security")
	if !ok || bytes.Equal(bytes.TrimSpace(sec), []byte("[]")) {
		return nil
	}
	op.set("security", json.RawMessage("[]"))
	return op.edit("responses", func(r *object) error {
		r.delete("401")
		return nil
	})
}

// object is a JSON object that keeps its members in order, so the served
// document reads as the embedded one does. It is written with MarshalJSON
// itself rather than json.Marshal, which would escape < and > in the text.
type object []member

type member struct {
	key   string
	value json.RawMessage
}

// edit applies fn to the member's value when it is an object; other values
// are left as they are.
func (m *member) edit(fn func(*object) error) error {
	if len(m.value) == 0 || m.value[0] != '{' {
		return nil
	}
	var o object
	if err := json.Unmarshal(m.value, &o); err != nil {
		return err
	}
	if err := fn(&o); err != nil {
		return fmt.Errorf("%s: %w", m.key, err)
	}
	v, err := o.MarshalJSON()
	if err != nil {
		return err
	}
	m.value = v
	return nil
}

// edit applies fn to the object under key; it is an error if there is none.
func (o *object) edit(key string, fn func(*object) error) error {
	for i := range *o {
		if (*o)[i].key == key {
			if (*o)[i].value[0] != '{' {
				return fmt.Errorf("%s is not an object", key)
			}
			return (*o)[i].edit(fn)
		}
	}
	return fmt.Errorf("no %s", key)
}

func (o object) get(key string) (json.RawMessage, bool) {
	for _, m := range o {
		if m.key == key {
			return m.value, true
		}
	}
	return nil, false
}

func (o *object) set(key string, v json.RawMessage) {
	for i := range *o {
		if (*o)[i].key == key {
			(*o)[i].value = v
			return
		}
	}
	*o = append(*o, member{key, v})
}

func (o *object) delete(key string) {
	for i := range *o {
		if (*o)[i].key == key {
			*o = append((*o)[:i], (*o)[i+1:]...)
			return
		}
	}
}

func (o *object) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	*o = (*o)[:0]
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		*o = append(*o, member{key, v})
	}
	_, err := dec.Token()
	return err
}

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

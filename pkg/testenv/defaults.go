package testenv

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// statedDefault finds where a field comment states its zero value's
// meaning, and the one or two words that state it ("Zero value means
// 10 minutes.", "Zero means 100,000.", "Empty means any origin.").
var statedDefault = regexp.MustCompile(`(?:Zero value means|Zero values mean|Zero means|Empty means) ("[^"]*"|\S+)(?: (\S+))?`)

// goDuration is a duration written as Go ("200 * time.Millisecond").
var goDuration = regexp.MustCompile(`(\d[\d,]*) \* time\.(Millisecond|Second|Minute|Hour)\b`)

// StatedDefaults checks a configuration struct against the comments of
// its fields: cfg is the struct after its defaults were applied (by its
// package's setDefaults, withDefaults or New), and every exported field
// whose comment says "Zero value means X" (or "Zero means", "Empty
// means") must hold X. X is read by the field's type: a duration ("30s",
// "10 minutes", "5 s"), a number ("250,000", "256 KiB"), a quoted string,
// or "off"/"none" for a zero number or an empty string. Fields of other kinds (pointers,
// funcs, interfaces, maps, structs, bools) are not checked. A field of a
// checked kind that is not zero in cfg (so its package gave it a
// default; pass cfg built from zero values) must state its default. skip names
// fields whose statement is not a value (GOMAXPROCS, the open-file limit)
// with the reason, so that a new field with such a comment fails until
// it is listed. dir is the package's directory, relative to the test.
//
// It keeps the one place the docs point to for a default (the comment)
// from drifting from the code that sets it.
func StatedDefaults(t testing.TB, dir string, cfg any, skip map[string]string) {
	t.Helper()
	v := reflect.ValueOf(cfg)
	typ := v.Type()
	docs := fieldDocs(t, dir, typ.Name())
	checked := 0
	for i := range typ.NumField() {
		sf := typ.Field(i)
		doc, ok := docs[sf.Name]
		if !sf.IsExported() || !ok {
			continue
		}
		m := statedDefault.FindStringSubmatch(goDuration.ReplaceAllString(doc, "$1 $2"))
		if m == nil {
			if _, skipped := skip[sf.Name]; statedKind(sf.Type) && !v.Field(i).IsZero() && !skipped {
				t.Errorf("%s.%s: has the default %v, which its comment does not state (\"Zero value means ...\")", typ.Name(), sf.Name, v.Field(i).Interface())
			}
			continue
		}
		if why, ok := skip[sf.Name]; ok {
			if why == "" {
				t.Errorf("%s.%s: skipped without a reason", typ.Name(), sf.Name)
			}
			continue
		}
		want, ok := statedValue(sf.Type, m[1], m[2])
		if !ok {
			if statedKind(sf.Type) {
				t.Errorf("%s.%s: cannot read the default its comment states (%q); state a value or add it to skip with the reason", typ.Name(), sf.Name, m[0])
			}
			continue
		}
		checked++
		if got := v.Field(i).Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s.%s: comment says %q, but the default is %v", typ.Name(), sf.Name, m[0], got)
		}
	}
	for name := range skip {
		if _, ok := typ.FieldByName(name); !ok {
			t.Errorf("%s: skip names %s, which is not a field", typ.Name(), name)
		}
	}
	if checked == 0 {
		t.Errorf("%s: no field comment states a default (wrong directory %s?)", typ.Name(), dir)
	}
}

// StatedDefault returns the first word of what the comment of field
// of the struct type typeName in dir says its zero value means ("30s;",
// "\"danmaku.\"", "GOMAXPROCS"), if it says.
func StatedDefault(t testing.TB, dir, typeName, field string) (string, bool) {
	t.Helper()
	doc, ok := fieldDocs(t, dir, typeName)[field]
	if !ok {
		t.Fatalf("no field %s.%s in %s", typeName, field, dir)
	}
	m := statedDefault.FindStringSubmatch(goDuration.ReplaceAllString(doc, "$1 $2"))
	if m == nil {
		return "", false
	}
	return m[1], true
}

// statedKind reports whether fields of type typ are checked.
func statedKind(typ reflect.Type) bool {
	switch typ.Kind() {
	case reflect.String, reflect.Int, reflect.Int64, reflect.Float64:
		return true
	}
	return false
}

// units are the duration words comments use after a number.
var units = map[string]time.Duration{
	"ms": time.Millisecond, "s": time.Second, "second": time.Second, "seconds": time.Second,
	"minute": time.Minute, "minutes": time.Minute, "hour": time.Hour, "hours": time.Hour,
	"Millisecond": time.Millisecond, "Second": time.Second, "Minute": time.Minute, "Hour": time.Hour,
}

// sizes are the size words comments use after a number.
var sizes = map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}

// statedValue reads the words w1 (and w2) of a comment as a value of type
// typ.
func statedValue(typ reflect.Type, w1, w2 string) (any, bool) {
	trim := func(s string) string { return strings.TrimRight(s, ".,;:)") }
	w1, w2 = trim(w1), trim(w2)
	number := func(s string) (float64, bool) {
		if s == "off" || s == "none" {
			return 0, true
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
		return f, err == nil
	}
	switch {
	case typ == reflect.TypeFor[time.Duration]():
		if d, err := time.ParseDuration(w1); err == nil {
			return d, true
		}
		if n, ok := number(w1); ok && units[w2] != 0 {
			return time.Duration(n * float64(units[w2])), true
		}
		if w1 == "off" || w1 == "none" {
			return time.Duration(0), true
		}
	case typ.Kind() == reflect.Int || typ.Kind() == reflect.Int64:
		n, ok := number(w1)
		if !ok || n != float64(int64(n)) {
			return nil, false
		}
		if s := sizes[w2]; s != 0 {
			n *= float64(s)
		}
		return reflect.ValueOf(int64(n)).Convert(typ).Interface(), true
	case typ.Kind() == reflect.Float64:
		if n, ok := number(w1); ok {
			return reflect.ValueOf(n).Convert(typ).Interface(), true
		}
	case typ.Kind() == reflect.String:
		if w1 == "none" {
			w1 = `""`
		}
		if s, err := strconv.Unquote(w1); err == nil {
			return reflect.ValueOf(s).Convert(typ).Interface(), true
		}
	}
	return nil, false
}

// fieldDocs returns the doc comments of the fields of the struct type
// name declared in the non-test Go files of dir, one line each.
func fieldDocs(t testing.TB, dir, name string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, spec := range gd.Specs {
				ts, ok := spec.(*ast.TypeSpec)
				if !ok || ts.Name.Name != name {
					continue
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					t.Fatalf("%s in %s is not a struct", name, dir)
				}
				docs := make(map[string]string)
				for _, fld := range st.Fields.List {
					doc := strings.Join(strings.Fields(fld.Doc.Text()), " ")
					for _, id := range fld.Names {
						docs[id.Name] = doc
					}
				}
				return docs
			}
		}
	}
	t.Fatalf("no type %s in %s", name, dir)
	return nil
}

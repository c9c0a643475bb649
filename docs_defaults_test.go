package main

import (
	"errors"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// The defaults of the server flags live in two places in the code: the
// flag's own default, or, for a flag that leaves its Config field at zero,
// the field's comment ("Zero value means 30s"), which the flag's -h text
// repeats ("(0: 30s)"). The docs state them once, in README's flag table.
// TestFlagTable keeps the three from drifting apart; each stage's own
// tests check its comments against its setDefaults (gateway:
// TestConfigCommentsStateDefaults).

// helpFlag is one flag as `danmaku ROLE -h` prints it.
type helpFlag struct {
	name, typ, usage string
	def              string // the "(default X)" value, unquoted; "" for a zero default
}

// effective is the default a user gets: the flag's own, else the one its
// usage names for the zero value ("(0: 1024, -1: no cap)", "(empty: any)",
// "; default gw-<host>-<pid>)"), else "false" for a bool, else "none".
func (f helpFlag) effective() string {
	if f.def != "" {
		return f.def
	}
	if m := zeroUsage.FindStringSubmatch(f.usage); m != nil {
		return strings.TrimSpace(m[1])
	}
	if m := defaultUsage.FindStringSubmatch(f.usage); m != nil {
		return strings.TrimSpace(m[1])
	}
	if f.typ == "" {
		return "false"
	}
	return "none"
}

var (
	zeroUsage    = regexp.MustCompile(`[(;] ?(?:0|empty): ([^,;)]+)`)
	defaultUsage = regexp.MustCompile(`[(;] ?default ([^;)]+)\)`)
	flagLine     = regexp.MustCompile(`^  -(\S+)(?: (\S+))?$`)
	defaultTail  = regexp.MustCompile(` \(default (.+)\)$`)
)

// helpFlags returns the flags of a server role, parsed from its -h text
// with no DANMAKU_* variable set.
func helpFlags(t *testing.T, role string) map[string]helpFlag {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "DANMAKU_") {
			t.Setenv(k, "")
		}
	}
	_, err := parseConfig(role, []string{"-h"}, io.Discard)
	var he *helpError
	if !errors.As(err, &he) {
		t.Fatalf("%s -h: %v, want the help text", role, err)
	}
	flags := make(map[string]helpFlag)
	var cur *helpFlag
	flush := func() {
		if cur == nil {
			return
		}
		cur.usage = strings.TrimSpace(cur.usage)
		if m := defaultTail.FindStringSubmatch(cur.usage); m != nil {
			cur.usage = strings.TrimSuffix(cur.usage, m[0])
			cur.def = m[1]
			if s, err := strconv.Unquote(cur.def); err == nil {
				cur.def = s
			}
		}
		flags[cur.name] = *cur
		cur = nil
	}
	for line := range strings.SplitSeq(he.text, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			flush()
			cur = &helpFlag{name: m[1], typ: m[2]}
		} else if cur != nil && strings.HasPrefix(line, "    \t") {
			cur.usage += " " + strings.TrimSpace(line)
		}
	}
	flush()
	if len(flags) < 10 {
		t.Fatalf("%s -h: found %d flags in:\n%s", role, len(flags), he.text)
	}
	return flags
}

// readmeRow is one row of README's flag table.
type readmeRow struct {
	env, def, cell string
}

// readmeFlags returns README's flag table (section "### Flags") by flag
// name. The default cell starts with the default in backquotes, or "none".
func readmeFlags(t *testing.T, readme string) map[string]readmeRow {
	t.Helper()
	_, sec, ok := strings.Cut(readme, "\n### Flags\n")
	if !ok {
		t.Fatal("README.md has no ### Flags section")
	}
	sec, _, _ = strings.Cut(sec, "\n#")
	rows := make(map[string]readmeRow)
	cellValue := regexp.MustCompile("^`([^`]+)`")
	for line := range strings.SplitSeq(sec, "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) < 4 {
			t.Fatalf("README flag row with %d cells: %s", len(cells), line)
		}
		name := strings.TrimPrefix(strings.Trim(cells[0], "`"), "--")
		row := readmeRow{env: strings.Trim(cells[1], "`"), cell: cells[2]}
		if m := cellValue.FindStringSubmatch(cells[2]); m != nil {
			row.def = m[1]
		} else if strings.HasPrefix(cells[2], "none") {
			row.def = "none"
		} else {
			t.Errorf("README --%s: default cell %q starts with neither `value` nor none", name, cells[2])
		}
		if _, dup := rows[name]; dup {
			t.Errorf("README lists --%s twice", name)
		}
		rows[name] = row
	}
	return rows
}

// TestFlagTable checks README's flag table against the flags of every
// server role (each flag listed once, with its variable and the default
// `-h` shows), and each flag's zero-value default against the comment of
// the Config field it sets.
func TestFlagTable(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := readmeFlags(t, string(readme))
	all := helpFlags(t, "all")
	for _, role := range []string{"all", "gateway", "logic", "dispatch"} {
		flags := all
		if role != "all" {
			flags = helpFlags(t, role)
		}
		for name, f := range flags {
			row, ok := rows[name]
			if !ok {
				t.Errorf("--%s (%s) is missing from README's flag table", name, role)
				continue
			}
			want := f.effective()
			switch {
			case role == "all" && row.def != want:
				t.Errorf("README --%s: default %q, but `danmaku all -h` says %q (%s)", name, row.def, want, f.usage)
			case role != "all" && want != all[name].effective() && !strings.Contains(row.cell, "else `"+want+"`"):
				t.Errorf("README --%s: default cell %q does not give %s's default %q (\"else `%s`\")", name, row.cell, role, want, want)
			}
			if row.env != envName(name) {
				t.Errorf("README --%s: variable %q, want %q", name, row.env, envName(name))
			}
		}
	}
	for name := range rows {
		if _, ok := all[name]; !ok {
			t.Errorf("README's flag table lists --%s, which `danmaku all -h` does not have", name)
		}
	}
	checkFlagComments(t, all)
}

// flagCommentExceptions are flags whose default is not one field's
// comment, and why.
var flagCommentExceptions = map[string]string{
	"id": "sets gateway.Config.ID and logic.Config.ID, whose defaults differ (gw-<hostname>-<pid>, host name and pid)",
}

// checkFlagComments sets each flag to a value other than its default and
// finds the Config fields that change; when such a field's comment states
// its zero value, the flag's effective default must be the same.
func checkFlagComments(t *testing.T, flags map[string]helpFlag) {
	base, err := parseConfig("all", []string{"--jwt-secret", "x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(mod), "\n")
	module := strings.TrimPrefix(line, "module ")
	for name, f := range flags {
		if name == "config" || name == "log-level" || flagCommentExceptions[name] != "" {
			continue
		}
		var v string
		switch f.typ {
		case "":
			v = strconv.FormatBool(f.def != "true")
		case "duration":
			v = "7777ms"
		case "int":
			v = "7777"
		default:
			v = "h:7777"
		}
		cfg, err := parseConfig("all", []string{"--jwt-secret", "x", "--" + name + "=" + v}, io.Discard)
		if err != nil {
			t.Errorf("--%s=%s: %v", name, v, err)
			continue
		}
		changed := diffFields(reflect.ValueOf(base), reflect.ValueOf(cfg), nil, "")
		if len(changed) == 0 && name != "jwt-secret" {
			t.Errorf("--%s=%s changed no Config field", name, v)
		}
		for _, ch := range changed {
			dir, ok := strings.CutPrefix(ch.owner.PkgPath(), module+"/")
			if !ok {
				t.Fatalf("%s is outside module %s", ch.owner, module)
			}
			stated, ok := testenv.StatedDefault(t, dir, ch.owner.Name(), ch.field)
			if !ok {
				continue
			}
			if got := f.effective(); commentValue(stated) != numeral(got) {
				t.Errorf("--%s sets %s, whose comment says its zero value means %s, but -h says %q (%s)", name, ch.path, stated, got, f.usage)
			}
		}
	}
}

// commentValue is the value a comment's word stands for: a quoted string
// unquoted, else the word without the punctuation that ends its sentence
// and without thousands separators ("250,000;" is 250000).
func commentValue(word string) string {
	if u, err := strconv.Unquote(word); err == nil {
		return u
	}
	return numeral(strings.TrimRight(word, ".,;:"))
}

// numeral drops the thousands separators of a number.
func numeral(s string) string {
	if _, err := strconv.Atoi(strings.ReplaceAll(s, ",", "")); err == nil {
		return strings.ReplaceAll(s, ",", "")
	}
	return s
}

// changedField is a Config field that differs between two configs.
type changedField struct {
	path  string
	owner reflect.Type // the struct type declaring the field
	field string
}

// diffFields lists the exported fields of plain kinds (strings, numbers,
// bools, durations, string slices) that differ between a and b, looking
// into nested structs.
func diffFields(a, b reflect.Value, out []changedField, prefix string) []changedField {
	typ := a.Type()
	for i := range typ.NumField() {
		sf := typ.Field(i)
		if !sf.IsExported() {
			continue
		}
		fa, fb := a.Field(i), b.Field(i)
		switch sf.Type.Kind() {
		case reflect.Struct:
			out = diffFields(fa, fb, out, prefix+sf.Name+".")
		case reflect.String, reflect.Int, reflect.Int64, reflect.Bool, reflect.Float64:
			if !fa.Equal(fb) {
				out = append(out, changedField{prefix + sf.Name, typ, sf.Name})
			}
		case reflect.Slice:
			if sf.Type.Elem().Kind() == reflect.String && !slices.Equal(fa.Interface().([]string), fb.Interface().([]string)) {
				out = append(out, changedField{prefix + sf.Name, typ, sf.Name})
			}
		}
	}
	return out
}

// TestClientOptionsTable checks docs/client.md's options table against
// gateway/web/danmaku.js: each numeric option's default in the table, in
// the constructor's JSDoc and in its code must be the same, and every
// option the constructor defaults must be in the table.
func TestClientOptionsTable(t *testing.T) {
	js, err := os.ReadFile("gateway/web/danmaku.js")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("docs/client.md")
	if err != nil {
		t.Fatal(err)
	}
	code := make(map[string]string)
	for _, m := range regexp.MustCompile(`this\.\w+ = opts\.(\w+) \?\? (\d+);`).FindAllStringSubmatch(string(js), -1) {
		code[m[1]] = m[2]
	}
	if len(code) < 5 {
		t.Fatalf("found %d option defaults in danmaku.js: %v", len(code), code)
	}
	jsdoc := make(map[string]string)
	for _, m := range regexp.MustCompile(`\[opts\.(\w+)=(\d+)\]`).FindAllStringSubmatch(string(js), -1) {
		jsdoc[m[1]] = m[2]
	}
	table := make(map[string]string)
	row := regexp.MustCompile("(?m)^\\| ((?:`\\w+`(?:, )?)+) \\| ([0-9, ]+) \\|")
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		names := strings.Split(strings.ReplaceAll(m[1], "`", ""), ", ")
		values := strings.Split(m[2], ", ")
		if len(names) != len(values) {
			t.Errorf("docs/client.md row %q: %d options, %d defaults", m[0], len(names), len(values))
			continue
		}
		for i, n := range names {
			table[n] = strings.TrimSpace(values[i])
		}
	}
	for name, v := range code {
		if table[name] != v {
			t.Errorf("docs/client.md: %s default %q, danmaku.js sets %s", name, table[name], v)
		}
		if jsdoc[name] != v {
			t.Errorf("danmaku.js JSDoc: %s default %q, the constructor sets %s", name, jsdoc[name], v)
		}
	}
	for name := range table {
		if _, ok := code[name]; !ok {
			t.Errorf("docs/client.md gives a default for %s, which danmaku.js's constructor does not default", name)
		}
	}
}

package main

import (
	"strings"
	"testing"
)

func TestWithoutPassword(t *testing.T) {
	for _, c := range []struct{ in, want, password string }{
		{"postgres://app:s3cr%21t@localhost:5432/db?sslmode=disable", "postgres://app@localhost:5432/db?sslmode=disable", "s3cr!t"},
		{"postgresql://app@localhost/db?password=s3cr3t&sslmode=disable", "postgresql://app@localhost/db?sslmode=disable", "s3cr3t"},
		{"host=localhost user=app password=s3cr3t dbname=db", "host=localhost user=app dbname=db", "s3cr3t"},
		{`host=localhost password='it\'s s3cr3t' user=app`, "host=localhost user=app", "it's s3cr3t"},
		{"password = s3cr3t host=localhost", "host=localhost", "s3cr3t"},
		{"host=localhost user=app", "host=localhost user=app", ""},
	} {
		got, pw, err := withoutPassword(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got != c.want || (c.password != "" && pw == "") || strings.Contains(got, "s3cr") {
			t.Errorf("%q: %q, password %q; want %q", c.in, got, pw, c.want)
		}
	}
	if _, _, err := withoutPassword("postgres://%zz"); err == nil || strings.Contains(err.Error(), "%zz") {
		t.Errorf("bad string: %v", err)
	}
}

package config

import (
	"strings"
	"testing"
)

// Every form a connection string takes in DATABASE_URL, REDIS_URL or
// AMQP_URL, readable or not: the secrets never come out, and what is not a
// secret stays readable where the form can be read for sure.
func TestMaskNeverPrintsAPassword(t *testing.T) {
	for _, c := range []struct {
		name, raw string
		secrets   []string // none may appear in the output
		want      string   // the exact output, when it is certain
	}{
		{name: "amqp URL", raw: "amqp://guest:secret@127.0.0.1:5672/v",
			secrets: []string{"secret"}, want: "amqp://guest:xxxxx@127.0.0.1:5672/v"},
		{name: "redis password only", raw: "redis://:s3cret@127.0.0.1:6379/0",
			secrets: []string{"s3cret"}, want: "redis://:xxxxx@127.0.0.1:6379/0"},
		{name: "empty password", raw: "amqp://guest:@h/", want: "amqp://guest:xxxxx@h/"},
		{name: "no password", raw: "postgres://postgres@127.0.0.1:5432/oneoffice?sslmode=disable",
			want: "postgres://postgres@127.0.0.1:5432/oneoffice?sslmode=disable"},
		{name: "no user", raw: "redis://127.0.0.1:6379/0", want: "redis://127.0.0.1:6379/0"},
		{name: "percent-encoded password", raw: "postgres://app:p%40ss%3Aw%2Frd@db:5432/oo",
			secrets: []string{"p%40ss", "p@ss", "w%2Frd", "w/rd"}, want: "postgres://app:xxxxx@db:5432/oo"},
		{name: "unencoded @ in the password", raw: "amqp://u:p@ss@h:5672/",
			secrets: []string{"p@ss", "ss@"}, want: "amqp://u:xxxxx@h:5672/"},
		{name: "unparseable: bad escape", raw: "postgres://app:s3cr%zzet@db/oo",
			secrets: []string{"s3cr", "zzet"}, want: "postgres://app:xxxxx@db/oo"},
		{name: "unparseable: / in the password", raw: "amqp://u:pa/ss@h/",
			secrets: []string{"pa/ss", "pa"}, want: "amqp://u:xxxxx@h/"},
		{name: "unparseable: space and control", raw: "postgres://u:se cr\x01et@h/db",
			secrets: []string{"se cr", "et@"}},
		{name: "digits and ? in the password parse as a port", raw: "amqp://u:12?34@h/",
			secrets: []string{"12?34", "34"}, want: "amqp://u:xxxxx@h/"},
		{name: "# in the password", raw: "amqp://u:12#34@h/", secrets: []string{"12#34", "34"}},
		{name: "no scheme", raw: "app:s3cret@db:5432/oo", secrets: []string{"s3cret"}, want: "app:xxxxx@db:5432/oo"},
		{name: "scheme without //", raw: "postgres:app:s3cret@db/oo", secrets: []string{"s3cret"}},
		{name: "query password", raw: "postgres://db/oo?user=app&password=s3cret&sslmode=disable",
			secrets: []string{"s3cret"}, want: "postgres://db/oo?user=app&password=xxxxx&sslmode=disable"},
		{name: "query with ; and other secret names", raw: "postgres://db/oo?a=1;sslpassword=s1&token=s2",
			secrets: []string{"s1", "s2"}, want: "postgres://db/oo?a=1;sslpassword=xxxxx&token=xxxxx"},
		{name: "user password and query password", raw: "rediss://default:s1@h:6380/1?password=s2",
			secrets: []string{"s1", "s2"}, want: "rediss://default:xxxxx@h:6380/1?password=xxxxx"},
		{name: "unparseable with query password", raw: "postgres://db/oo?password=s%zz3cret&sslmode=disable",
			secrets: []string{"s%zz3cret", "3cret"}},
		{name: "key=value DSN", raw: "host=db user=app password=s3cret dbname=oo",
			secrets: []string{"s3cret"}, want: "host=db user=app password=xxxxx dbname=oo"},
		{name: "key=value DSN, quoted", raw: "host=db password='s3 cr\\'et' dbname=oo",
			secrets: []string{"s3", "cr", "et'"}, want: "host=db password=xxxxx dbname=oo"},
		{name: "key=value DSN, quote doubled", raw: "password='it''s' host=db",
			secrets: []string{"it", "'s'"}, want: "password=xxxxx host=db"},
		{name: "key=value DSN, blanks around =", raw: "user=app PASSWORD = s3cret",
			secrets: []string{"s3cret"}, want: "user=app PASSWORD = xxxxx"},
		{name: "key=value DSN, unclosed quote", raw: "password='s3 cret", secrets: []string{"s3", "cret"}},
		{name: "AMQP node list", raw: "amqp://u:s1@h1:5672/v,amqp://u:s2@h2:5672/v",
			secrets: []string{"s1", "s2"}, want: "amqp://u:xxxxx@h1:5672/v,amqp://u:xxxxx@h2:5672/v"},
		{name: "AMQP node list with blanks and one bad URL", raw: "amqps://u:s1@h1/v, amqp://u:s%zz2@h2/v",
			secrets: []string{"s1", "s%zz2", "zz2"}},
		{name: "PostgreSQL host list", raw: "postgres://app:s3cret@h1:5432,h2:5432/oo",
			secrets: []string{"s3cret"}, want: "postgres://app:xxxxx@h1:5432,h2:5432/oo"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Mask(c.raw)
			for _, s := range c.secrets {
				if strings.Contains(got, s) {
					t.Errorf("Mask(%q) = %q: shows %q", c.raw, got, s)
				}
			}
			if c.want != "" && got != c.want {
				t.Errorf("Mask(%q) = %q, want %q", c.raw, got, c.want)
			}
		})
	}
}

// A refused URL is named in the error, masked.
func TestInvalidURLErrorsAreMasked(t *testing.T) {
	_, err := Load(env(map[string]string{"DATABASE_URL": "mysql://app:s3cret@db/oo", "AMQP_URL": "amqp://u:s%zz3@h/"}),
		DefaultGatewayMetrics)
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "zz3") {
		t.Fatalf("error %v", err)
	}
}

package amqpx

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"regexp"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// nodeSep finds where the next URL of a comma-separated list starts: a comma
// followed by a scheme. A comma inside one URL (in a password, say) is not
// followed by a scheme and does not split; shared/config reads the list the
// same way when it checks AMQP_URL.
var nodeSep = regexp.MustCompile(`,\s*[A-Za-z][A-Za-z0-9+.-]*://`)

// Nodes splits AMQP_URL into the URLs of the nodes it lists, in order,
// trimmed of spaces; a URL naming one broker is a list of one.
func Nodes(list string) []string {
	var nodes []string
	for {
		loc := nodeSep.FindStringIndex(list)
		if loc == nil {
			return append(nodes, strings.TrimSpace(list))
		}
		nodes = append(nodes, strings.TrimSpace(list[:loc[0]]))
		list = list[loc[0]+1:]
	}
}

// shuffled returns a copy of nodes in random order.
func shuffled(nodes []string) []string {
	out := append([]string(nil), nodes...)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// dialAny connects to the first of nodes that answers and declares the
// topology there. Its error names every node it tried, without passwords.
func dialAny(nodes []string, log *slog.Logger) (*amqp.Connection, error) {
	var errs []error
	for _, n := range nodes {
		conn, err := dialOnce(n)
		if err == nil {
			if len(nodes) > 1 {
				log.Info("broker node connected", "node", hostOf(n))
			}
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", hostOf(n), err))
	}
	return nil, errors.Join(errs...)
}

// hostOf is the host:port of a node's URL, for messages: never its password.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable URL)"
	}
	return u.Host
}

package protocol

import (
	"strings"
	"testing"
)

var long = strings.Repeat("a", 65)

// decodeCases are the validation cases of every method: an empty code is a
// params object that must be accepted. TestEveryMethodHasValidationCases
// wants at least one accepted and one refused case per registered method.
var decodeCases = []struct {
	method, params, code, field, msg string
}{
	{CreateCustomer, `{"id":"ABC","name":"ABC Co","admin":{"email":"a@example.com","phone":"1","displayName":"A"}}`, "", "", ""},
	{CreateCustomer, `{"id":"","name":"n","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.id", "params.id must be a string of 1 to 64 characters"},
	{CreateCustomer, `{"id":"` + long + `","name":"n","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.id", ""},
	{CreateCustomer, `{"id":"A B","name":"n","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.id", ""},
	{CreateCustomer, `{"id":7,"name":"n","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.id", "params.id must be a string"},
	{CreateCustomer, `{"id":"A","name":"  ","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.name", ""},
	{CreateCustomer, `{"id":"A","name":"n"}`, CodeInvalidParams, "params.admin", "params.admin must be an object"},
	{CreateCustomer, `{"id":"A","name":"n","admin":"x"}`, CodeInvalidParams, "params.admin", ""},
	{CreateCustomer, `{"id":"A","name":"n","admin":{"email":"nope"}}`, CodeInvalidParams, "params.admin.email", "params.admin.email must be an email"},
	{CreateFirstOrder, `{"customer":"C","id":"O","product":"oo-lite","licenses":20,"duration":"monthly"}`, "", "", ""},
	{CreateFirstOrder, `{"customer":"C","id":"O","product":"oo-max","licenses":20,"duration":"monthly"}`, CodeInvalidParams, "params.product", "must be one of oo-lite"},
	{CreateFirstOrder, `{"customer":"C","id":"O","product":"oo-lite","licenses":0,"duration":"monthly"}`, CodeInvalidParams, "params.licenses", "params.licenses must be an integer from 1 to 100000"},
	{CreateFirstOrder, `{"customer":"C","id":"O","product":"oo-lite","licenses":100001,"duration":"monthly"}`, CodeInvalidParams, "params.licenses", ""},
	{CreateFirstOrder, `{"customer":"C","id":"O","product":"oo-lite","licenses":2.5,"duration":"monthly"}`, CodeInvalidParams, "params.licenses", "must be an integer"},
	{CreateFirstOrder, `{"customer":"C","id":"O","product":"oo-lite","licenses":"20","duration":"monthly"}`, CodeInvalidParams, "params.licenses", ""},
	{CreateFirstOrder, `{"customer":"C","id":"O","product":"oo-lite","licenses":20,"duration":"weekly"}`, CodeInvalidParams, "params.duration", "params.duration must be monthly or yearly"},
	{CreateRenewalOrder, `{"parent":"O","id":"R"}`, "", "", ""},
	{CreateRenewalOrder, `{"id":"R"}`, CodeInvalidParams, "params.parent", ""},
	{UpdateOrder, `{"id":"O"}`, CodeInvalidParams, "params", "licenses, product or both"},
	{UpdateOrder, `{"id":"O","licenses":3}`, "", "", ""},
	{UpdateOrder, `{"id":"O","product":"nope"}`, CodeInvalidParams, "params.product", ""},
	{CreateUser, `{"email":""}`, CodeInvalidParams, "params.email", "params.email must be an email"},
	{CreateUser, `{"email":"Ann <ann@example.com>"}`, CodeInvalidParams, "params.email", ""},
	{CreateUser, `{"email":"ann@example.com","displayName":"Ann"}`, "", "", ""},
	{DeleteUser, `{"email":"ann@localhost"}`, CodeInvalidParams, "params.email", ""},
	{DeleteUser, `{"email":"Ann@Example.com"}`, "", "", ""},
	{ResetUser, `{"email":"ann@example.com"}`, "", "", ""},
	{ResetUser, `{"email":"ann"}`, CodeInvalidParams, "params.email", "params.email must be an email"},
	{ResetUser, `{}`, CodeInvalidParams, "params.email", ""},
	{CancelOrder, `{"id":"O-1"}`, "", "", ""},
	{CancelOrder, `{"id":""}`, CodeInvalidParams, "params.id", "params.id must be a string of 1 to 64"},
	{SuspendOrder, `{"id":"O.1"}`, "", "", ""},
	{SuspendOrder, `{"id":["O"]}`, CodeInvalidParams, "params.id", "params.id must be a string"},
	{ResumeOrder, `{"id":"O:1"}`, "", "", ""},
	{ResumeOrder, `{"id":"O/1"}`, CodeInvalidParams, "params.id", ""},
	{GetOrder, `{"id":"O_1"}`, "", "", ""},
	{GetOrder, `{}`, CodeInvalidParams, "params.id", ""},
	{GetCustomer, `{"id":"ABC"}`, "", "", ""},
	{GetCustomer, `[]`, CodeInvalidRequest, "params", "params must be a JSON object"},
	{GetCustomer, `"x"`, CodeInvalidRequest, "params", ""},
	{GetCustomer, `null`, CodeInvalidRequest, "params", ""},
	{GetCustomer, ``, CodeInvalidRequest, "params", ""},
	{GetRequest, `{"id":"3f2a9c1e-8d7b-4e60-9a35-0c1d2e3f4a5b"}`, "", "", ""},
	{GetRequest, `{"id":"partner's own id / with spaces"}`, "", "", ""},
	{GetRequest, `{"id":""}`, CodeInvalidParams, "params.id", "params.id must be a request id: 1 to 128 printable ASCII"},
	{GetRequest, `{"id":"` + strings.Repeat("r", 129) + `"}`, CodeInvalidParams, "params.id", ""},
	{GetRequest, `{"id":"tab\there"}`, CodeInvalidParams, "params.id", ""},
	{GetRequest, `{"id":"caf\u00e9"}`, CodeInvalidParams, "params.id", ""},
	{"listCustomers", `{}`, "", "", ""},
	{"listCustomers", `{"updatedSince":1700000000,"limit":100,"cursor":"eyJhIjpbXX0.AbC-_9"}`, "", "", ""},
	{"listCustomers", `{"limit":0}`, CodeInvalidParams, "params.limit", "params.limit must be an integer from 1 to 100"},
	{"listCustomers", `{"limit":101}`, CodeInvalidParams, "params.limit", ""},
	{"listCustomers", `{"limit":"5"}`, CodeInvalidParams, "params.limit", "params.limit must be an integer from 1 to 100"},
	{"listCustomers", `{"updatedSince":-1}`, CodeInvalidParams, "params.updatedSince", "Unix seconds"},
	{"listCustomers", `{"cursor":"not a cursor"}`, CodeInvalidParams, "params.cursor", "params.cursor must be the nextCursor"},
	{"listCustomers", `{"cursor":""}`, CodeInvalidParams, "params.cursor", ""},
	{"listOrders", `{"customer":"C1","status":"expired","updatedSince":0,"limit":1}`, "", "", ""},
	{"listOrders", `{"status":"paused"}`, CodeInvalidParams, "params.status", "params.status must be one of active, suspended, cancelled, expired"},
	{"listOrders", `{"customer":"a b"}`, CodeInvalidParams, "params.customer", ""},
	{"listUsers", `{"limit":3}`, "", "", ""},
	{"listUsers", `{"email":"a@example.com"}`, CodeInvalidParams, "params.email", "not a param of listUsers"},
	{"listRequests", `{"method":"createCustomer","status":"failed","since":1700000000}`, "", "", ""},
	{"listRequests", `{"method":"getOrder"}`, CodeInvalidParams, "params.method", "params.method must be the name of a method that changes something"},
	{"listRequests", `{"status":"pending"}`, CodeInvalidParams, "params.status", "getRequest finds it"},
	{"getOrders", `{"ids":["O1","R1"]}`, "", "", ""},
	{"listEvents", `{"type":"command.succeeded","since":1700000000,"requestId":"req-1","limit":10}`, "", "", ""},
	{"listEvents", `{"type":"ping"}`, CodeInvalidParams, "params.type", "params.type must be command.succeeded or command.failed"},
	{"listEvents", `{"requestId":""}`, CodeInvalidParams, "params.requestId", "params.requestId"},
	{"replayEvent", `{"id":"msg_0b6f3c1e-8f4a-4f0e-9a51-2c4b8e1d7f30"}`, "", "", ""},
	{"replayEvent", `{"id":"0b6f3c1e-8f4a-4f0e-9a51-2c4b8e1d7f30"}`, CodeInvalidParams, "params.id", "params.id must be an event's webhook-id"},
	{"replayEvent", `{"id":"msg_0B6F3C1E-8f4a-4f0e-9a51-2c4b8e1d7f30"}`, CodeInvalidParams, "params.id", "params.id must be an event's webhook-id"},
	{"replayEvent", `{}`, CodeInvalidParams, "params.id", "params.id"},
	{"getPartner", `{}`, "", "", ""},
	{"getPartner", `{"id":"x"}`, CodeInvalidParams, "params.id", "params.id"},
	{"getOrders", `{"ids":[]}`, CodeInvalidParams, "params.ids", "params.ids must be an array of 1 to 100 distinct order ids"},
	{"getOrders", `{}`, CodeInvalidParams, "params.ids", "it has 0"},
	{"getOrders", `{"ids":"O1"}`, CodeInvalidParams, "params.ids", "params.ids must be an array"},
	{"getOrders", `{"ids":["O1",7]}`, CodeInvalidParams, "params.ids.1", "params.ids must be an array"},
	{"getOrders", `{"ids":["O1","a b"]}`, CodeInvalidParams, "params.ids.1", "params.ids.1 must be a string of 1 to 64"},
	{"getOrders", `{"ids":["O1","O2","O1"]}`, CodeInvalidParams, "params.ids.2", "params.ids.2 repeats params.ids.0"},
	{"getOrders", `{"ids":[` + strings.TrimSuffix(strings.Repeat(`"x",`, 101), ",") + `]}`, CodeInvalidParams, "params.ids", "it has 101"},
	{"dropTables", `{}`, CodeUnknownMethod, "method", ""},
	// Strict decoding: exact names, no unknown or repeated ones, integers as integers.
	{CreateCustomer, `{"ID":"A","name":"n","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.ID", "params.ID is not a param of createCustomer (names are case-sensitive)"},
	{CreateCustomer, `{"id":"A","name":"n","admin":{"email":"a@example.com","Email":"b@example.com"}}`, CodeInvalidParams, "params.admin.Email", "not a param"},
	{CreateCustomer, `{"id":"A","id":"B","name":"n","admin":{"email":"a@example.com"}}`, CodeInvalidJSON, "params.id", "params.id appears twice"},
	{CreateFirstOrder, `{"customer":"C","id":"O","product":"oo-lite","licenses":20.0,"duration":"monthly"}`, CodeInvalidParams, "params.licenses", "must be an integer"},
	{CreateFirstOrder, `{"customer":"C","id":"O","product":"oo-lite","licenses":2e1,"duration":"monthly"}`, CodeInvalidParams, "params.licenses", "must be an integer"},
	{CreateFirstOrder, `{"customer":"C","id":"O","product":"oo-lite","licenses":1e400,"duration":"monthly"}`, CodeInvalidParams, "params.licenses", "must be an integer"},
	{CreateFirstOrder, `{"customer":"C","id":"O","product":"oo-lite","licences":20,"duration":"monthly"}`, CodeInvalidParams, "params.licences", "not a param"},
	{UpdateOrder, `{"id":"O","licenses":null}`, CodeInvalidParams, "params", "licenses, product or both"},
	// Text: controls, invisible characters and invalid UTF-8 are refused by field.
	{CreateCustomer, `{"id":"A","name":"A\u0000B","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.name", "found U+0000 at character 2"},
	{CreateCustomer, `{"id":"A","name":"A\tB","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.name", "U+0009"},
	{CreateCustomer, `{"id":"A","name":"A\u007fB","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.name", "U+007F"},
	{CreateCustomer, `{"id":"A","name":"A\u0085B","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.name", "U+0085"},
	{CreateCustomer, `{"id":"A","name":"Ann\u202eevil","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.name", "U+202E"},
	{CreateCustomer, `{"id":"A","name":"A\u200bB","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.name", "U+200B"},
	{CreateCustomer, `{"id":"A","name":"\ufeffA","admin":{"email":"a@example.com"}}`, CodeInvalidParams, "params.name", "U+FEFF"},
	{CreateCustomer, `{"id":"A","name":"A\ud800B","admin":{"email":"a@example.com"}}`, CodeInvalidJSON, "params.name", "surrogate"},
	{CreateCustomer, "{\"id\":\"A\",\"name\":\"A\xffB\",\"admin\":{\"email\":\"a@example.com\"}}", CodeInvalidJSON, "params.name", "UTF-8"},
	{CreateCustomer, `{"id":"A","name":"Zoë Ångström 株式会社","admin":{"email":"a@example.com","phone":"+49 30 1234","displayName":"Zoë"}}`, "", "", ""},
	{CreateCustomer, `{"id":"A","name":"n","admin":{"email":"a@example.com","phone":"1\u200d2"}}`, CodeInvalidParams, "params.admin.phone", "U+200D"},
	{CreateCustomer, `{"id":"A","name":"n","admin":{"email":"a@example.com","displayName":"\u2067x"}}`, CodeInvalidParams, "params.admin.displayName", "U+2067"},
	{CreateUser, `{"email":"ann\u0000@example.com"}`, CodeInvalidParams, "params.email", "U+0000"},
	{CreateUser, `{"email":"zoë@example.com"}`, CodeInvalidParams, "params.email", "must be an email"},
	{CreateUser, `{"email":"ann@example.com","displayName":"A\u001bB"}`, CodeInvalidParams, "params.displayName", "U+001B"},
}

func TestDecodeParams(t *testing.T) {
	t.Parallel()
	for _, c := range decodeCases {
		_, err := DecodeParams(c.method, []byte(c.params))
		if c.code == "" {
			if err != nil {
				t.Errorf("%s %s: unexpected error %v", c.method, c.params, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s %s: no error, want %s", c.method, c.params, c.code)
			continue
		}
		if err.Code != c.code || err.Field != c.field || !strings.Contains(err.Message, c.msg) || err.Status != 400 {
			t.Errorf("%s %s: got %d %s %s %q, want %s %s %q", c.method, c.params, err.Status, err.Code, err.Field, err.Message, c.code, c.field, c.msg)
		}
	}
}

func TestCanonicalIsStable(t *testing.T) {
	t.Parallel()
	a, _ := DecodeParams(CreateCustomer, []byte(`{"name":"N","admin":{"displayName":"D","email":"a@example.com"},"id":"X"}`))
	b, _ := DecodeParams(CreateCustomer, []byte(`{"id":"X","admin":{"email":"a@example.com","displayName":"D"},"name":"N"}`))
	if string(Canonical(a)) != string(Canonical(b)) {
		t.Fatalf("canonical forms differ:\n%s\n%s", Canonical(a), Canonical(b))
	}
	u1, _ := DecodeParams(CreateUser, []byte(`{"email":"Ann@Example.com"}`))
	u2, _ := DecodeParams(CreateUser, []byte(`{"email":"ann@example.com"}`))
	if string(Canonical(u1)) != string(Canonical(u2)) || key(CreateUser, u1) != "user:ann@example.com" {
		t.Fatalf("emails not folded: %s %s %s", Canonical(u1), Canonical(u2), key(CreateUser, u1))
	}
}

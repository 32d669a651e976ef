package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// Location is where a Store lives, as written in a store URL:
//
//	dynamodb://TABLE?endpoint=URL&region=R&create=true
//
// Every query parameter is optional. Credentials never appear in the URL:
// they come from the AWS default chain (environment, shared files, SSO,
// instance or task role).
type Location struct {
	// Table is the table's name.
	Table string
	// Endpoint is a base URL such as http://127.0.0.1:8000 for a local
	// server (dynalite, DynamoDB Local); empty means AWS itself.
	Endpoint string
	// Region is the AWS region; empty means the environment's
	// (AWS_REGION, shared config), or us-east-1 with an Endpoint.
	Region string
	// Create makes New create the table (CreateTable) if it is missing.
	Create bool
}

// maxURL bounds a store URL, which comes from flags or configuration.
const maxURL = 4096

// ParseURL reads a dynamodb:// store URL. Errors name the part that is
// wrong.
func ParseURL(rawURL string) (Location, error) {
	var loc Location
	if len(rawURL) > maxURL {
		return loc, fmt.Errorf("dynamodb URL: longer than %d bytes", maxURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return loc, fmt.Errorf("dynamodb URL: %w", err)
	}
	if u.Scheme != "dynamodb" {
		return loc, fmt.Errorf("dynamodb URL: scheme %q, want dynamodb://TABLE", u.Scheme)
	}
	if u.Opaque != "" {
		return loc, errors.New("dynamodb URL: table: missing, write dynamodb://TABLE")
	}
	if u.User != nil {
		return loc, errors.New("dynamodb URL: user info: credentials do not belong in the URL; they come from the AWS default chain (AWS_ACCESS_KEY_ID, ~/.aws, instance role)")
	}
	if u.Path != "" && u.Path != "/" {
		return loc, fmt.Errorf("dynamodb URL: path %q: the table is the host part, dynamodb://TABLE", u.Path)
	}
	if u.Fragment != "" || strings.Contains(rawURL, "#") {
		return loc, errors.New("dynamodb URL: fragment: not allowed")
	}
	if err := checkTable(u.Host); err != nil {
		return loc, fmt.Errorf("dynamodb URL: %w", err)
	}
	loc.Table = u.Host
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return loc, fmt.Errorf("dynamodb URL: query: %w", err)
	}
	for name, vs := range q {
		if len(vs) != 1 {
			return loc, fmt.Errorf("dynamodb URL: %s: given %d times", name, len(vs))
		}
		v := vs[0]
		switch name {
		case "endpoint":
			if err := checkEndpoint(v); err != nil {
				return loc, fmt.Errorf("dynamodb URL: endpoint: %w", err)
			}
			loc.Endpoint = v
		case "region":
			if !validRegion(v) {
				return loc, fmt.Errorf("dynamodb URL: region %q: want a region name such as eu-west-1", v)
			}
			loc.Region = v
		case "create":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return loc, fmt.Errorf("dynamodb URL: create %q: want true or false", v)
			}
			loc.Create = b
		default:
			return loc, fmt.Errorf("dynamodb URL: unknown parameter %q (known: endpoint, region, create)", name)
		}
	}
	return loc, nil
}

// String writes l as a store URL that ParseURL reads back.
func (l Location) String() string {
	q := url.Values{}
	if l.Endpoint != "" {
		q.Set("endpoint", l.Endpoint)
	}
	if l.Region != "" {
		q.Set("region", l.Region)
	}
	if l.Create {
		q.Set("create", "true")
	}
	u := url.URL{Scheme: "dynamodb", Host: l.Table, RawQuery: q.Encode()}
	return u.String()
}

// checkTable enforces DynamoDB's table naming rules, so a typo fails
// before any request.
func checkTable(name string) error {
	if len(name) < 3 || len(name) > 255 {
		return fmt.Errorf("table %q: want 3 to 255 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Errorf("table %q: only letters, digits, '_', '-' and '.' are allowed", name)
		}
	}
	return nil
}

func checkEndpoint(v string) error {
	e, err := url.Parse(v)
	if err != nil {
		return err
	}
	if e.Scheme != "http" && e.Scheme != "https" {
		return fmt.Errorf("%q: want an http:// or https:// URL", v)
	}
	if e.Host == "" || e.Hostname() == "" {
		return fmt.Errorf("%q: no host", v)
	}
	if p := e.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: bad port", v)
		}
	}
	if e.User != nil || e.RawQuery != "" || e.Fragment != "" || (e.Path != "" && e.Path != "/") {
		return fmt.Errorf("%q: want only scheme, host and port", v)
	}
	return nil
}

func validRegion(v string) bool {
	if v == "" || len(v) > 32 {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// isLoopback reports whether endpoint names this machine.
func isLoopback(endpoint string) bool {
	e, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	h := e.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// client returns a DynamoDB client for l, from the AWS default
// configuration with l's region and endpoint. A loopback endpoint with no credentials in the environment gets
// static dummy credentials, as local servers accept any.
func (l Location) client(ctx context.Context) (*dynamodb.Client, error) {
	local := l.Endpoint != "" && isLoopback(l.Endpoint)
	var opts []func(*config.LoadOptions) error
	if l.Region != "" {
		opts = append(opts, config.WithRegion(l.Region))
	}
	// The SDK keeps 10 idle connections per host by default; a busy
	// instance has more requests than that in flight to one endpoint.
	opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = 256
	})))
	if local {
		// No instance metadata on a developer's machine: asking would
		// only add a timeout before the dummy credentials.
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("dynamodb: AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		if l.Endpoint == "" {
			return nil, errors.New("dynamodb URL: region: not given, and none in the environment (AWS_REGION or ~/.aws/config)")
		}
		cfg.Region = "us-east-1" // local servers ignore it, but signing needs one
	}
	if local {
		err := errors.New("no credentials provider")
		if cfg.Credentials != nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = cfg.Credentials.Retrieve(cctx)
			cancel()
		}
		if err != nil {
			cfg.Credentials = credentials.NewStaticCredentialsProvider("local", "local", "")
		}
	}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if l.Endpoint != "" {
			o.BaseEndpoint = aws.String(l.Endpoint)
		}
	}), nil
}

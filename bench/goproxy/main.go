// Command goproxy is the bench's Go peer: the standard library's reverse proxy
// with nothing tuned but the idle connections kept per upstream host.
//
// Toward its callers it serves TLS, offering HTTP/2 and HTTP/1.1 by ALPN
// (net/http's server defaults, as an aggregated apiserver would); toward the
// upstream it keeps a pool of HTTP/1.1 connections over TLS.  Upgrades (101)
// are spliced by httputil.ReverseProxy itself.  A bearer token, when given, is
// set on every outbound request, as `kubectl proxy` does from its kubeconfig.
//
//	goproxy -listen 127.0.0.1:8443 -cert tls.crt -key tls.key \
//	        -upstream https://127.0.0.1:9443 -upstream-ca ca.crt [-token T]
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8443", "address to serve TLS on")
	certFile := flag.String("cert", "", "serving certificate (PEM, chain)")
	keyFile := flag.String("key", "", "serving key (PEM)")
	upstream := flag.String("upstream", "", "upstream base URL (https://host:port)")
	caFile := flag.String("upstream-ca", "", "CA bundle that signed the upstream's certificate")
	token := flag.String("token", "", "bearer token set on every outbound request")
	idle := flag.Int("max-idle-per-host", 1024, "idle upstream connections kept")
	flag.Parse()

	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatalf("goproxy: -upstream %q is not a URL", *upstream)
	}
	roots := x509.NewCertPool()
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			log.Fatalf("goproxy: %v", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			log.Fatalf("goproxy: no certificate in %s", *caFile)
		}
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: roots}
	// A custom TLS config and no ForceAttemptHTTP2: HTTP/1.1 only, pooled.
	transport.ForceAttemptHTTP2 = false
	transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	transport.MaxIdleConns = 0
	transport.MaxIdleConnsPerHost = *idle

	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = transport
	direct := proxy.Director
	bearer := ""
	if *token != "" {
		bearer = "Bearer " + *token
	}
	proxy.Director = func(r *http.Request) {
		direct(r)
		if bearer != "" {
			r.Header.Set("Authorization", bearer)
		}
	}

	server := &http.Server{Addr: *listen, Handler: proxy}
	log.Printf("goproxy: serving %s for %s", *listen, target)
	log.Fatal(server.ListenAndServeTLS(*certFile, *keyFile))
}

package netfilter

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// servicesFile is the services database iptables reads through
// getservbyname and getservbyport.
const servicesFile = "/etc/services"

// serviceDB maps service names to ports and ports to names, per
// protocol ("tcp", "udp", "sctp", ...), as the C library's lookups do.
type serviceDB struct {
	byName map[string]uint16 // "name/proto", aliases included
	byPort map[string]string // "port/proto": the first name listed
}

// builtinServices is used when /etc/services cannot be read: the names
// iptables users commonly write, for TCP and UDP.
var builtinServices = map[string]uint16{
	"ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53,
	"bootps": 67, "bootpc": 68, "tftp": 69, "http": 80, "www": 80, "kerberos": 88,
	"pop3": 110, "sunrpc": 111, "ntp": 123, "imap": 143, "imap2": 143, "snmp": 161,
	"ldap": 389, "https": 443, "microsoft-ds": 445, "submission": 587, "ldaps": 636,
	"imaps": 993, "pop3s": 995, "openvpn": 1194, "mysql": 3306, "postgresql": 5432,
	"isakmp": 500, "syslog": 514, "rsync": 873,
}

// services is read once (New reads it before a sandbox drops its
// privileges) and never changes afterwards, so iptables and tunstack
// name the same ports the same way on the same host.
var services = sync.OnceValue(func() *serviceDB {
	f, err := os.Open(servicesFile)
	if err == nil {
		defer f.Close()
		if db := parseServices(f); len(db.byName) > 0 {
			return db
		}
	}
	db := &serviceDB{byName: map[string]uint16{}, byPort: map[string]string{}}
	for _, proto := range []string{"tcp", "udp"} {
		for _, name := range []string{"ftp-data", "ftp", "ssh", "telnet", "smtp", "domain", "http", "https"} {
			db.byPort[strconv.Itoa(int(builtinServices[name]))+"/"+proto] = name
		}
		for name, port := range builtinServices {
			db.byName[name+"/"+proto] = port
		}
	}
	return db
})

// parseServices reads services(5) text: "name port/proto [aliases...]
// [# comment]".
func parseServices(r io.Reader) *serviceDB {
	db := &serviceDB{byName: map[string]uint16{}, byPort: map[string]string{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ps, proto, ok := strings.Cut(f[1], "/")
		port, err := strconv.ParseUint(ps, 10, 16)
		if !ok || err != nil {
			continue
		}
		key := strconv.Itoa(int(port)) + "/" + proto
		if _, seen := db.byPort[key]; !seen {
			db.byPort[key] = f[0]
		}
		for _, name := range append([]string{f[0]}, f[2:]...) {
			if _, seen := db.byName[name+"/"+proto]; !seen {
				db.byName[name+"/"+proto] = uint16(port)
			}
		}
	}
	return db
}

// protoServiceName is the protocol name the services database uses for
// a protocol number ("" when it has none).
func protoServiceName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 33:
		return "udplite"
	case 132:
		return "sctp"
	case 136:
		return "dccp"
	}
	return ""
}

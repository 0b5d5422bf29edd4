package fdserve

import (
	"testing"

	"go.uber.org/goleak"
)

// Serving leaves no goroutine behind: flows end with their commands.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

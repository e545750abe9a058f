package pluginname

import "testing"

func TestCheck(t *testing.T) {
	for _, name := range []string{"spancost.cost", "spancost.totals", "my_plugin", "acme-cost.v2", "3rd.party", "_private"} {
		if err := Check(name); err != nil {
			t.Errorf("Check(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", "spancost cost", ".hidden", "-x", "module:Attr", "a=b", "ümlaut"} {
		if err := Check(name); err == nil {
			t.Errorf("Check(%q) = nil, want an error", name)
		}
	}
}

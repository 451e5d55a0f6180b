package facility

import _ "embed"

// DemoCSV is a copy of the county network of ../shared/data/facilities.csv
// (2 city, 3 county, 14 township and 280 village facilities), shipped in the
// binary so `qinba seed --demo` works anywhere.
//
//go:embed data/facilities.csv
var DemoCSV []byte

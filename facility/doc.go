// Package facility owns the county's four-tier facility registry
// (city > county > township > village): its types and tier rules, the CSV
// import, the facility table's SQL and the /api/v1/facilities routes.
// Nothing else writes the facility table.
package facility

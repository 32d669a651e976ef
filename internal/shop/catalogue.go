package shop

// Product is one item of the demo catalogue.
type Product struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int    `json:"price_cents"`
}

// catalogue is fixed: the demo is about where state lives, not about
// inventory. demo-sku is always present so scripts have a known SKU.
var catalogue = []Product{
	{SKU: "demo-sku", Name: "Demo sticker", PriceCents: 150},
	{SKU: "mug", Name: "Stateless mug", PriceCents: 1200},
	{SKU: "tee", Name: "Any-instance T-shirt", PriceCents: 2200},
	{SKU: "hoodie", Name: "Drain-proof hoodie", PriceCents: 4800},
	{SKU: "socks", Name: "Failover socks", PriceCents: 900},
	{SKU: "cap", Name: "Load-balanced cap", PriceCents: 1600},
}

func productBySKU(sku string) (Product, bool) {
	for _, p := range catalogue {
		if p.SKU == sku {
			return p, true
		}
	}
	return Product{}, false
}

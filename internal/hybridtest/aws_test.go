package hybridtest

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// awsAPI reads what moto holds through the AWS APIs themselves (plain
// HTTP; moto does not check signatures, only the credential scope that
// names the service).
type awsAPI struct {
	endpoint string
	region   string
}

func (a awsAPI) do(ctx context.Context, service, method, path string, form url.Values, out any) error {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, a.endpoint+path, body)
	if err != nil {
		return err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Authorization", fmt.Sprintf(
		"AWS4-HMAC-SHA256 Credential=test/%s/%s/%s/aws4_request, SignedHeaders=host, Signature=0",
		time.Now().UTC().Format("20060102"), a.region, service))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s %s: %s: %s", service, method, path, resp.Status, b)
	}
	if err := xml.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s %s: %w: %s", service, method, path, err, b)
	}
	return nil
}

func (a awsAPI) query(ctx context.Context, service, action, version string, params url.Values, out any) error {
	form := url.Values{"Action": {action}, "Version": {version}}
	for k, v := range params {
		form[k] = v
	}
	return a.do(ctx, service, http.MethodPost, "/", form, out)
}

type hostedZone struct {
	ID   string `xml:"Id"`
	Name string `xml:"Name"`
}

func (a awsAPI) hostedZones(ctx context.Context) ([]hostedZone, error) {
	var out struct {
		Zones []hostedZone `xml:"HostedZones>HostedZone"`
	}
	err := a.do(ctx, "route53", http.MethodGet, "/2013-04-01/hostedzone", nil, &out)
	return out.Zones, err
}

type recordSet struct {
	Name   string   `xml:"Name"`
	Type   string   `xml:"Type"`
	TTL    int      `xml:"TTL"`
	Values []string `xml:"ResourceRecords>ResourceRecord>Value"`
}

func (a awsAPI) recordSets(ctx context.Context, zoneID string) ([]recordSet, error) {
	var out struct {
		Sets []recordSet `xml:"ResourceRecordSets>ResourceRecordSet"`
	}
	err := a.do(ctx, "route53", http.MethodGet, "/2013-04-01/hostedzone/"+strings.TrimPrefix(zoneID, "/hostedzone/")+"/rrset", nil, &out)
	return out.Sets, err
}

const elbv2Version = "2015-12-01"

type loadBalancer struct {
	ARN     string `xml:"LoadBalancerArn"`
	Name    string `xml:"LoadBalancerName"`
	DNSName string `xml:"DNSName"`
	Type    string `xml:"Type"`
	VPCID   string `xml:"VpcId"`
}

func (a awsAPI) loadBalancers(ctx context.Context) ([]loadBalancer, error) {
	var out struct {
		LBs []loadBalancer `xml:"DescribeLoadBalancersResult>LoadBalancers>member"`
	}
	err := a.query(ctx, "elasticloadbalancing", "DescribeLoadBalancers", elbv2Version, nil, &out)
	return out.LBs, err
}

type targetGroup struct {
	ARN        string `xml:"TargetGroupArn"`
	Name       string `xml:"TargetGroupName"`
	TargetType string `xml:"TargetType"`
}

func (a awsAPI) targetGroups(ctx context.Context) ([]targetGroup, error) {
	var out struct {
		TGs []targetGroup `xml:"DescribeTargetGroupsResult>TargetGroups>member"`
	}
	err := a.query(ctx, "elasticloadbalancing", "DescribeTargetGroups", elbv2Version, nil, &out)
	return out.TGs, err
}

type target struct {
	ID   string `xml:"Target>Id"`
	Port int    `xml:"Target>Port"`
}

func (a awsAPI) targets(ctx context.Context, targetGroupARN string) ([]target, error) {
	var out struct {
		Targets []target `xml:"DescribeTargetHealthResult>TargetHealthDescriptions>member"`
	}
	err := a.query(ctx, "elasticloadbalancing", "DescribeTargetHealth", elbv2Version,
		url.Values{"TargetGroupArn": {targetGroupARN}}, &out)
	return out.Targets, err
}

type vpc struct {
	ID        string `xml:"vpcId"`
	CIDRBlock string `xml:"cidrBlock"`
	IsDefault bool   `xml:"isDefault"`
}

func (a awsAPI) vpcs(ctx context.Context) ([]vpc, error) {
	var out struct {
		VPCs []vpc `xml:"vpcSet>item"`
	}
	err := a.query(ctx, "ec2", "DescribeVpcs", "2016-11-15", nil, &out)
	return out.VPCs, err
}

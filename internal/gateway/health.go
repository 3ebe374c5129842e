package gateway

import (
	"context"

	"connectrpc.com/connect/v2"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// healthServiceName is the standard gRPC health service.
const healthServiceName = "grpc.health.v1.Health"

// registerHealth serves grpc.health.v1 on server with the standard schema
// (grpc-go's generated messages), so its JSON form says "SERVING" as every
// gRPC health client expects. kvgate is healthy while it serves: the empty
// service name and each of services answer SERVING (List names them all);
// Watch sends that once
// and holds the stream until the client or the server ends it. Other names
// are NOT_FOUND, as the protocol asks.
func registerHealth(server *connect.Server, services ...string) {
	known := map[string]bool{"": true}
	for _, s := range services {
		known[s] = true
	}
	check := func(req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
		if !known[req.GetService()] {
			return nil, connect.NewError(connect.CodeNotFound, "unknown service")
		}
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
	}
	list := func(*healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
		res := &healthpb.HealthListResponse{Statuses: make(map[string]*healthpb.HealthCheckResponse, len(known))}
		for name := range known {
			res.Statuses[name] = &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}
		}
		return res, nil
	}
	methods := healthpb.File_grpc_health_v1_health_proto.Services().ByName("Health").Methods()
	server.Register(
		unaryMethod(methods.ByName("Check"), check),
		unaryMethod(methods.ByName("List"), list),
		connect.Method{
			Spec: connect.Spec{
				StreamType: connect.StreamTypeServer,
				Schema:     methods.ByName("Watch"),
				Procedure:  "/" + healthServiceName + "/Watch",
			},
			Handler: func(ctx context.Context, _ connect.Spec, stream connect.ServerStream) error {
				var req healthpb.HealthCheckRequest
				if err := stream.Receive(&req); err != nil {
					return err
				}
				res, err := check(&req)
				if err != nil {
					return err
				}
				if err := stream.Send(res); err != nil {
					return err
				}
				<-ctx.Done()
				return nil
			},
		},
	)
}

// unaryMethod serves fn as the side-effect-free unary method md.
func unaryMethod[Req, Res any, PReq interface{ *Req }](md protoreflect.MethodDescriptor, fn func(PReq) (Res, error)) connect.Method {
	return connect.Method{
		Spec: connect.Spec{
			StreamType:       connect.StreamTypeUnary,
			IdempotencyLevel: connect.IdempotencyNoSideEffects,
			Schema:           md,
			Procedure:        "/" + string(md.Parent().FullName()) + "/" + string(md.Name()),
		},
		Handler: func(_ context.Context, _ connect.Spec, stream connect.ServerStream) error {
			req := PReq(new(Req))
			if err := stream.Receive(req); err != nil {
				return err
			}
			res, err := fn(req)
			if err != nil {
				return err
			}
			return stream.Send(res)
		},
	}
}

with

payments as (

    select * from {{ ref('stg_payments') }}

),

orders as (

    select * from {{ ref('stg_orders') }}

),

joined as (

    select
        payments.payment_id,
        payments.order_id,
        orders.customer_id,
        orders.order_date,
        payments.payment_method,
        payments.amount,
        payments.is_refund

    from payments

    inner join orders
        on payments.order_id = orders.order_id

),

final as (

    select
        cast(payment_id as integer) as payment_id,
        cast(order_id as integer) as order_id,
        cast(customer_id as integer) as customer_id,
        cast(order_date as date) as order_date,
        cast(payment_method as varchar) as payment_method,
        cast(amount as decimal(18, 2)) as amount,
        cast(is_refund as boolean) as is_refund

    from joined

)

select * from final
